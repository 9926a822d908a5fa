"""`wam-ros train`: train the reference WAM on an episode dataset (data/dataset.py format).

    wam-ros train --data DATA_DIR --config tiny|default|my.yaml --out CKPT_DIR [--resume]
    torchrun --nproc_per_node 4 -m wam_ros.cli.train --data ... --out ...   (DDP)

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

This module is the training loop; a batch's tensors and targets are model/batches.py, the
normalisation statistics model/stats.py, the weight average model/ema.py and the resumable
optimizer state model/train_state.py.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from wam_ros.core.config import ConfigError
from wam_ros.core.settings import MEMORIES
from wam_ros.data.dataset import interface
from wam_ros.data.dataset_reader import open_dataset
from wam_ros.data.windows import WindowDataset, split_episodes
from wam_ros.model.batches import collate, prepare
from wam_ros.model.checkpoint import read_checkpoint_config, save_checkpoint
from wam_ros.model.config import ModelConfig, TrainConfig, load_config, with_robot
from wam_ros.model.curves import TrainCurves
from wam_ros.model.ema import WeightEMA
from wam_ros.model.stats import check_stats_cover, compute_stats
from wam_ros.model.train_state import RAW_WEIGHTS, load_train_state, save_train_state
from wam_ros.model.wam import WorldActionModel

MEMORY_SCHEDULE = MEMORIES


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
