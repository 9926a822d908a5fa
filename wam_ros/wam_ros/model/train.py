"""`wam-ros train`: train the reference WAM on an episode dataset (data/dataset.py format).

    wam-ros train --data DATA_DIR --config tiny|default|my.yaml --out CKPT_DIR [--resume]
    torchrun --nproc_per_node 4 -m wam_ros.model.train --data ... --out ...   (DDP)

Each step samples windows of `train_chunks` consecutive chunks, computes the joint
flow-matching losses (future latent + action chunk, decoupled timesteps) and alternates the
memory variant (even steps kv: block-causal attention over the window; odd steps ttt: the
Dual-State TTT recurrence), so one checkpoint serves both. Validation reports each head's
loss (latent / action) for both memories. Checkpoints (safetensors + YAML + statistics) are
written every `save_every` steps and at the end; `--resume` continues from the optimizer state
in CKPT_DIR/train_state/. With `--ema DECAY` (train.ema_decay) the checkpoint's weights are an
exponential moving average of the trained ones (validation reports the average too), and
train_state/ keeps the raw weights that resume continues from. Each validation rewrites
CKPT_DIR/history.csv (step, learning rate, training loss per head, validation losses) and
CKPT_DIR/curves.png (model/curves.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from wam_ros.core.config import ConfigError
from wam_ros.core.settings import MEMORIES
from wam_ros.data.dataset import WindowDataset, interface, open_dataset, split_episodes
from wam_ros.model.checkpoint import read_checkpoint_config, save_checkpoint
from wam_ros.model.config import ModelConfig, TrainConfig, load_config, with_robot
from wam_ros.model.curves import TrainCurves
from wam_ros.model.wam import WorldActionModel

MEMORY_SCHEDULE = MEMORIES


# ---- batches -------------------------------------------------------------------------------
def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = {
        "images": torch.from_numpy(np.stack([i["images"] for i in items])),
        "state": torch.from_numpy(np.stack([i["state"] for i in items])),
        "actions": torch.from_numpy(np.stack([i["actions"] for i in items])),
        "task": [i["task"] for i in items],
    }
    if "objects" in items[0]:
        batch["objects"] = torch.from_numpy(np.stack([i["objects"] for i in items]))
    return batch


def object_targets(objects: torch.Tensor) -> torch.Tensor:
    """(..., 4K) recorded poses (x, y, z, yaw per object) -> (..., 5K) what the object head
    predicts: x, y, z, sin 4yaw, cos 4yaw (a cube's yaw only matters modulo a quarter turn,
    and the pair is continuous where the recorded yaw wraps)."""
    poses = objects.unflatten(-1, (-1, 4))
    yaw = 4 * poses[..., 3:]
    return torch.cat([poses[..., :3], torch.sin(yaw), torch.cos(yaw)], -1).flatten(-2)


def gripper_mask(cfg: ModelConfig) -> torch.Tensor:
    """(D,) bool, True for the gripper entries of the action layout (none if the robot
    config is unknown here)."""
    from wam_ros.core.config import ConfigError
    from wam_ros.core.robot import RobotSpec

    try:
        spec = RobotSpec.load(cfg.robot)
    except (ConfigError, FileNotFoundError):
        return torch.zeros(cfg.action_dim, dtype=torch.bool)
    if tuple(spec.action_layout) != tuple(cfg.action_layout):
        return torch.zeros(cfg.action_dim, dtype=torch.bool)
    return torch.as_tensor(spec.gripper_mask(), dtype=torch.bool)


def model_actions(cfg: ModelConfig, actions: torch.Tensor, state: torch.Tensor,
                  latent_encoder: Any = None) -> torch.Tensor:
    """Absolute actions (B, C, H, D) -> what the flow head learns (before normalisation)."""
    if cfg.action_space == "absolute":
        return actions
    delta = actions - state[:, :, None]
    if cfg.action_space == "delta":
        # Grippers stay absolute openings (0 closed .. 1 open), joints become offsets: the
        # convention core.decoding.ChunkDecoder decodes (DecoderConfig.delta_grippers False).
        grippers = gripper_mask(cfg).to(actions.device)
        return torch.where(grippers, actions, delta)
    if latent_encoder is None:
        raise ValueError("action_space latent needs the latent-action encoder")
    b, c = delta.shape[:2]
    with torch.no_grad():
        lat = latent_encoder.encode(delta.flatten(0, 1), state.flatten(0, 1))
    return lat.view(b, c, cfg.horizon, -1)


def prepare(model: WorldActionModel, batch: dict[str, Any], device: torch.device,
            latent_encoder: Any = None) -> tuple[Any, ...]:
    """feats, state, actions (normalised), task vectors and the normalised object targets
    (None without an object head or object poses in the batch)."""
    cfg = model.cfg
    images = batch["images"].to(device, torch.float32)  # (B, C+1, ncam, 3, H, W)
    b, c1 = images.shape[:2]
    grad = cfg.encoder_trainable and model.training
    with torch.set_grad_enabled(grad):
        feats = model.encode(images.flatten(0, 1)).view(b, c1, cfg.n_obs_tokens, -1)
    state = batch["state"].to(device)
    acts = model_actions(cfg, batch["actions"].to(device), state, latent_encoder)
    state_n = (state - model.state_mean) / model.state_std
    acts_n = (acts - model.action_mean) / model.action_std
    objects = None
    if model.object_head is not None and "objects" in batch:
        objects = (object_targets(batch["objects"].to(device)) - model.object_mean) / (
            model.object_std)
    return feats, state_n, acts_n, model.task_vector(batch["task"]), objects


def compute_stats(model: WorldActionModel, data: WindowDataset, n: int, device: torch.device,
                  latent_encoder: Any = None) -> dict[str, torch.Tensor]:
    feats, states, acts, objects = [], [], [], []
    step = max(1, len(data) // n)
    with torch.no_grad():
        for i in range(0, min(len(data), n * step), step):
            batch = collate([data[i]])
            if not model.bounded_tokens:
                img = batch["images"].to(device, torch.float32).flatten(0, 1)
                f = model.raw_tokens(img.flatten(0, 1))
                feats.append(f.reshape(-1, f.shape[-1]))
            st = batch["state"].to(device)
            states.append(st.reshape(-1, st.shape[-1]))
            a = model_actions(model.cfg, batch["actions"].to(device), st, latent_encoder)
            acts.append(a.reshape(-1, a.shape[-1]))
            if model.object_head is not None:
                o = object_targets(batch["objects"].to(device))
                objects.append(o.reshape(-1, o.shape[-1]))

    def ms(x: list[torch.Tensor], floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        cat = torch.cat(x)
        return cat.mean(0), cat.std(0).clamp(min=floor)

    out = {}
    for name, xs, floor in (("feat", feats, 1e-3), ("state", states, 1e-2),
                            ("action", acts, 1e-3), ("object", objects, 1e-2)):
        if xs:
            mean, std = ms(xs, floor)
            out[f"{name}_mean"], out[f"{name}_std"] = mean.cpu(), std.cpu()
    if model.bounded_tokens:
        # coordinates in [-1, 1] whose spread the training itself sets: statistics of the
        # untrained encoder would only distort them
        out["feat_mean"] = torch.zeros(model.feature_dim)
        out["feat_std"] = torch.full((model.feature_dim,), 0.5)
    return out


def check_stats_cover(model: WorldActionModel, stats: dict[str, torch.Tensor], ckpt: str,
                      limit: float = 10.0) -> None:
    """Fine-tuning keeps the checkpoint's normalisation; refuse data whose states or actions
    it would blow up: a dimension spread (or off-centre) by more than `limit` of the
    checkpoint's standard deviation (an arm that never moved in its data, say)."""
    names = list(model.cfg.action_layout)
    for kind in ("state", "action"):
        mean, std = getattr(model, f"{kind}_mean"), getattr(model, f"{kind}_std")
        spread = torch.maximum(stats[f"{kind}_std"] / std,
                               (stats[f"{kind}_mean"] - mean).abs() / std)
        worst = int(spread.argmax())
        if float(spread[worst]) > limit:
            label = names[worst] if spread.numel() == len(names) else f"#{worst}"
            raise ConfigError(
                f"--init {ckpt}: the data's {kind} {label} spreads {float(spread[worst]):.0f}x "
                f"the checkpoint's standard deviation ({float(std[worst]):.3g}); its "
                "normalisation does not fit this data: pass --new-stats")


# ---- weight averaging ----------------------------------------------------------------------
class WeightEMA:
    """Exponential moving average of a model's trainable parameters.

    After update n (1-based) each average moves towards the parameter by 1 - d with
    d = min(decay, (1 + n) / (10 + n)): early updates follow the weights closely, later ones
    average over about 1 / (1 - decay) steps. Buffers (normalisation statistics) are not
    averaged; `applied` lends the model the averages for evaluating or saving."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay: got {decay}; allowed: 0 < decay < 1")
        self.decay, self.updates = float(decay), int(updates)
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()
                       if p.requires_grad}

    def rate(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.rate()
        self.updates += 1
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module,
                weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write the averages (or `weights`, same names) into the model's parameters."""
        params = dict(model.named_parameters())
        for n, v in (self.shadow if weights is None else weights).items():
            params[n].copy_(v)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model with the averaged weights inside the block, its own ones after."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            self.copy_to(model, saved)


# ---- optimizer state without pickle ------------------------------------------------------
RAW_WEIGHTS = "weights.safetensors"  # train_state/: the trained (not averaged) weights


def save_train_state(out: Path, opt: torch.optim.Optimizer, step: int,
                     history: list[dict[str, float]],
                     model: torch.nn.Module | None = None) -> None:
    """Optimizer state, step and history; `model`: also its raw weights (a run whose
    checkpoint holds averaged ones resumes from these)."""
    d = out / "train_state"
    d.mkdir(parents=True, exist_ok=True)
    if model is not None:
        raw = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(raw, str(d / (RAW_WEIGHTS + ".tmp")))
        os.replace(d / (RAW_WEIGHTS + ".tmp"), d / RAW_WEIGHTS)
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous()
               for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    save_file(tensors, str(d / "optimizer.safetensors.tmp"))
    os.replace(d / "optimizer.safetensors.tmp", d / "optimizer.safetensors")
    meta = {"step": step, "param_groups": sd["param_groups"], "history": history}
    (d / "state.json.tmp").write_text(json.dumps(meta))
    os.replace(d / "state.json.tmp", d / "state.json")


def load_train_state(out: Path, opt: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    d = out / "train_state"
    meta = json.loads((d / "state.json").read_text())
    tensors = load_file(str(d / "optimizer.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta.get("history", []))


# ---- training --------------------------------------------------------------------------
def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def evaluate(model: WorldActionModel, data: WindowDataset, tcfg: TrainConfig,
             device: torch.device, latent_encoder: Any = None) -> dict[str, float]:
    """Mean validation loss per head and memory, with fixed noise (comparable over time)."""
    model.eval()
    sums: dict[str, float] = {}
    gen = torch.Generator(device=device)
    with torch.no_grad():
        for bi in range(tcfg.val_batches):
            idx = [(bi * tcfg.batch_size + j) % len(data) for j in range(tcfg.batch_size)]
            feats, st, ac, task, obj = prepare(model, collate([data[i] for i in idx]), device,
                                               latent_encoder)
            for mem in MEMORY_SCHEDULE:
                gen.manual_seed(1000 + bi)
                # the object head does not depend on the memory: evaluated once
                first = mem == MEMORY_SCHEDULE[0]
                losses = model.loss(feats, st, ac, task, mem, generator=gen,
                                    objects=obj if first else None)
                keys = {f"{head}_{mem}": head for head in ("latent", "action")}
                keys.update({"object": "object"} if "object" in losses else {})
                for key, head in keys.items():
                    sums[key] = sums.get(key, 0.0) + float(losses[head]) / tcfg.val_batches
    model.train()
    return sums


def _check_data_fits(mcfg: ModelConfig, info, data_name: str, ckpt: str | Path) -> None:
    """The dataset's robot interface must be the checkpoint's (fine-tuning)."""
    ours, theirs = interface(info), interface(mcfg)
    for key, value in ours.items():
        if value != theirs[key]:
            raise ConfigError(f"{data_name}: {key} {value} does not match {ckpt}'s "
                              f"{theirs[key]}")


def train(data_dir: str | Path | list[str | Path],
          config: str | Path | tuple[ModelConfig, TrainConfig], out_dir: str | Path, *,
          resume: bool = False, device: str = "auto",
          steps: int | None = None, batch_size: int | None = None,
          action_space: str | None = None, rest_tail_tolerance: float | None = None,
          object_loss: float | None = None, progress: bool = True,
          log: Any = print, init: str | Path | None = None,
          lr: float | None = None, new_stats: bool = False,
          ema: float | None = None) -> dict[str, Any]:
    """Train and write a checkpoint; returns {"history", "checkpoint" (path), "model"}
    (the model with the checkpoint's weights: averaged ones with `ema`).
    `init`: fine-tune from that checkpoint (its config and statistics; `config` is unused).
    `ema`: train.ema_decay (TrainConfig)."""
    out = Path(out_dir)
    if init is not None and resume:
        raise ConfigError("--init starts a new run from a checkpoint, --resume continues --out's "
                          "run: use one of them")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
    dev = torch.device(device)

    reader = open_dataset(data_dir)
    data_name = str(reader.root)  # every directory: for messages and the checkpoint's record
    if resume:
        mcfg, tcfg = read_checkpoint_config(out)
    elif init is not None:
        mcfg, tcfg = read_checkpoint_config(init)
        _check_data_fits(mcfg, reader.info, data_name, init)
    else:
        mcfg, tcfg = config if isinstance(config, tuple) else load_config(config)
        info = reader.info
        mcfg = with_robot(mcfg, robot=info.robot, action_layout=info.action_layout,
                          camera_names=info.camera_names, dt=info.dt)
        if tuple(mcfg.image_size) != tuple(info.image_size):
            raise ConfigError(f"model.image_size {list(mcfg.image_size)} does not match the "
                              f"dataset's {list(info.image_size)} ({data_name})")
    if steps is not None:
        tcfg.steps = steps
    if batch_size is not None:
        tcfg.batch_size = batch_size
    if lr is not None:
        if not lr > 0:
            raise ConfigError(f"--lr: got {lr}; allowed: > 0")
        tcfg.lr = lr
    if rest_tail_tolerance is not None:
        tcfg.rest_tail_tolerance = rest_tail_tolerance
    if ema is not None:
        if not 0.0 <= ema < 1.0:
            raise ConfigError(f"--ema: got {ema}; allowed: 0 (off) or a decay in (0, 1)")
        tcfg.ema_decay = ema
    fresh = not resume and init is None  # the model's shape comes from the config and data
    if object_loss is not None and not resume:
        if object_loss < 0:
            raise ConfigError(f"--object-loss: got {object_loss}; allowed: >= 0")
        tcfg.object_loss = object_loss
    if action_space is not None and fresh:
        mcfg.action_space = action_space
    if not resume:
        objects = reader.info.objects
        if tcfg.object_loss > 0 and not objects:
            raise ConfigError(f"train.object_loss {tcfg.object_loss}: {data_name} records no "
                              "object poses (a simulator dataset does: wam-ros sim generate)")
        dim = 5 * (len(objects) // 4) if tcfg.object_loss > 0 else 0
        if fresh:  # the object head exists where its loss is trained
            mcfg.object_dim = dim
        elif dim and dim != mcfg.object_dim:
            raise ConfigError(f"--init {init}: its object head predicts {mcfg.object_dim} "
                              f"values, {data_name}'s objects need {dim} (--object-loss 0 "
                              "trains without it)")
    if len(reader) < 2:
        raise ValueError(f"{data_name}: need at least 2 episodes (train + validation)")

    torch.manual_seed(tcfg.seed + rank)
    train_eps, val_eps = split_episodes(len(reader), tcfg.val_fraction, tcfg.seed)
    with_objects = mcfg.object_dim > 0 and tcfg.object_loss > 0
    train_data = WindowDataset(reader, train_eps, mcfg.horizon, tcfg.train_chunks,
                               samples_per_epoch=10**9, seed=tcfg.seed,
                               rest_tolerance=tcfg.rest_tail_tolerance, objects=with_objects)
    val_data = WindowDataset(reader, val_eps, mcfg.horizon, tcfg.train_chunks,
                             samples_per_epoch=tcfg.val_batches * tcfg.batch_size,
                             seed=tcfg.seed + 1, rest_tolerance=tcfg.rest_tail_tolerance,
                             objects=with_objects)

    model = WorldActionModel(mcfg).to(dev)
    latent_encoder = None
    if mcfg.action_space == "latent":
        from wam_ros.model.latent_decoder import ensure_latent_autoencoder

        latent_encoder = ensure_latent_autoencoder(mcfg, out / "latent_decoder", dev,
                                                   progress=progress and rank == 0, log=log,
                                                   steps=tcfg.latent_steps, save=rank == 0)
    history: list[dict[str, float]] = []
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    start = 0
    averaged: WeightEMA | None = None
    if resume:
        from safetensors.torch import load_file as load_weights

        start, history = load_train_state(out, opt)
        raw = out / "train_state" / RAW_WEIGHTS
        if tcfg.ema_decay > 0 and raw.is_file():  # the checkpoint holds the averages
            model.load_state_dict(load_weights(str(out / "model.safetensors")))
            averaged = WeightEMA(model, tcfg.ema_decay, updates=start)
        model.load_state_dict(load_weights(str(raw if raw.is_file() else
                                               out / "model.safetensors")))
        log(f"resuming {out} at step {start}")
    elif init is not None:
        from safetensors.torch import load_file as load_weights

        # statistics included: the weights were trained on that normalisation
        model.load_state_dict(load_weights(str(Path(init) / "model.safetensors")))
        stats = compute_stats(model, train_data, tcfg.stats_samples, dev, latent_encoder)
        if new_stats:
            model.set_stats(stats)
        else:
            check_stats_cover(model, stats, str(init))
        log(f"fine-tuning {init} on {data_name}"
            + (" (statistics of the new data)" if new_stats else ""))
    else:
        stats = compute_stats(model, train_data, tcfg.stats_samples, dev, latent_encoder)
        model.set_stats(stats)
    if averaged is None and tcfg.ema_decay > 0:
        averaged = WeightEMA(model, tcfg.ema_decay)
    ddp_model: Any = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=True)  # the TTT layer is idle on kv steps

    origin = {"init": str(init)} if init is not None else {}

    def checkpoint_weights() -> Any:  # the model with the weights the checkpoint ships
        return averaged.applied(model) if averaged is not None else nullcontext(model)

    def save(step: int) -> None:
        with checkpoint_weights():
            save_checkpoint(model, out, tcfg, extra={"step": step, "data": data_name, **origin})
        save_train_state(out, opt, step, history, model if averaged is not None else None)
    model.train()
    bar = tqdm(range(start, tcfg.steps), initial=start, total=tcfg.steps, desc="train",
               disable=not progress or rank != 0, file=sys.stderr)
    t_start = time.perf_counter()
    # history.csv + curves.png in the run directory, rewritten at each validation
    curves = TrainCurves(out, resume_step=start if resume else None) if rank == 0 else None
    if rank == 0 and start == 0:
        out.mkdir(parents=True, exist_ok=True)
        val = evaluate(model, val_data, tcfg, dev, latent_encoder)
        history.append({"step": 0, **val})
        curves.validation(0, _lr(0, tcfg), val)  # type: ignore[union-attr]
        log("val step 0: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(step, tcfg)
        base = (step * world + rank) * tcfg.batch_size
        batch = collate([train_data[base + j] for j in range(tcfg.batch_size)])
        feats, st, ac, task, obj = prepare(model, batch, dev, latent_encoder)
        memory = MEMORY_SCHEDULE[step % len(MEMORY_SCHEDULE)]
        losses = ddp_model(feats, st, ac, task, memory, obj)
        total = losses["total"]
        if obj is not None:
            total = total + tcfg.object_loss * losses["object"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        opt.step()
        if averaged is not None and rank == 0:
            averaged.update(model)
        step_losses = {"latent": losses["latent"].item(), "action": losses["action"].item()}
        if obj is not None:
            step_losses["object"] = losses["object"].item()
        step_losses["total"] = total.item()
        if curves is not None:
            curves.add_step(step_losses)
        bar.set_postfix(lat=f"{step_losses['latent']:.3f}",
                        act=f"{step_losses['action']:.3f}", mem=memory)
        done = step + 1
        if rank == 0 and (done % tcfg.val_every == 0 or done == tcfg.steps):
            with checkpoint_weights():
                val = evaluate(model, val_data, tcfg, dev, latent_encoder)
            history.append({"step": done, **val})
            curves.validation(done, _lr(step, tcfg), val)  # type: ignore[union-attr]
            bar.write(f"val step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
        if rank == 0 and (done % tcfg.save_every == 0 or done == tcfg.steps):
            save(done)
    bar.close()
    if rank == 0:
        save(tcfg.steps)
        log(f"wrote {out} ({time.perf_counter() - t_start:.1f} s)")
        if averaged is not None:  # hand back what the checkpoint holds
            averaged.copy_to(model)
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"history": history, "checkpoint": out, "model": model}


def run(args: argparse.Namespace) -> int:
    try:
        train(args.data, args.config, args.out, resume=args.resume, device=args.device,
              init=args.init, lr=args.lr, new_stats=args.new_stats, ema=args.ema,
              steps=args.steps, batch_size=args.batch_size, action_space=args.action_space,
              rest_tail_tolerance=args.rest_tail_tolerance, object_loss=args.object_loss,
              progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
