"""Model and training configuration: one validated dataclass each, read from YAML or a preset.

`tiny` is a small trainable-conv model for tests and quick experiments (runs in seconds on a
CPU); `default` is the reference size (frozen EfficientNet-Lite0, 3 cameras 224x224, chunk 16,
4 flow steps). A YAML file may name a preset under `base:` and override any key:

    base: default
    model: {d_model: 384, n_layers: 6}
    train: {steps: 20000}

Errors name the file, the key, the bad value and the allowed values (core.config.Section).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wam_ros.core.config import ConfigError, Section, load_yaml
from wam_ros.core.settings import MEMORIES, MODES

ENCODERS = ("conv", "conv_keypoints", "efficientnet_lite0")
TRAINABLE_ENCODERS = ("conv", "conv_keypoints")
ACTION_SPACES = ("absolute", "delta", "latent")


@dataclass
class ModelConfig:
    """Architecture and data interface of the reference World Action Model."""

    # ---- robot / data interface (filled from the dataset when training) -----------------
    robot: str = ""
    action_layout: tuple[str, ...] = ()
    camera_names: tuple[str, ...] = ()
    image_size: tuple[int, int] = (224, 224)  # (H, W) the encoder sees
    dt: float = 1.0 / 30.0  # seconds between actions
    action_space: str = "delta"  # absolute | delta (to the state at the observation) | latent
    horizon: int = 16  # actions per chunk
    latent_action_dim: int = 8  # per-step latent action size (action_space == latent)
    # ---- encoder ------------------------------------------------------------------------
    encoder: str = "efficientnet_lite0"
    encoder_trainable: bool = False  # only the conv encoders may be trained
    conv_channels: int = 32  # feature size of the conv encoders
    grid: int = 2  # tokens per camera = grid * grid (fixed-shape average pooling)
    keypoints: int = 32  # conv_keypoints: soft-argmax keypoints per camera, split over its tokens
    # ---- Mixture-of-Transformers backbone ---------------------------------------------------
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    task_buckets: int = 1024  # hashed bag-of-words task embedding
    # ---- memory -----------------------------------------------------------------------------
    memory_window: int = 8  # chunks visible to attention, the current one included (kv)
    ttt_expansion: int = 4  # TTT-MLP hidden size = ttt_expansion * d_model (CLWM: 4x, GELU)
    ttt_alpha_init: float = 0.1  # gate tanh(alpha) of the TTT residual (CLWM: 0.1)
    ttt_lr_init: float = 0.1  # inner-loop learning rate eta (learned, kept positive)
    ttt_grad_clip: float = 1.0  # inner-gradient norm clip: keeps fast weights bounded
    # ---- flow matching ------------------------------------------------------------------------
    flow_steps: int = 4
    latent_beta: tuple[float, float] = (7.0, 1.0)  # DreamZero-Flash: s_lat = 1 - eta, eta~Beta
    p_clean_latent: float = 0.25  # share of chunks whose actions see the clean future latent
    p_fast: float = 0.25  # share of chunks whose actions do not see the latent (Fast-WAM)
    p_history_noise: float = 0.5  # CLWM history augmentation probability
    history_noise_min: float = 0.5  # s_aug ~ U[history_noise_min, 1]
    step_cache_threshold: float = 0.99  # DiT step caching; > 1 disables
    # inference: scale of the flow's starting noise (1 = the learned distribution; lower
    # samples nearer its modes: smoother chunks, see docs/model.md); runtime settings may override
    noise_scale: float = 1.0
    # ---- privileged object head (training only) ------------------------------------------
    # outputs of a head that predicts the scene's object poses from the observation tokens
    # (x, y, z, sin 4yaw, cos 4yaw per object); set from the dataset when train.object_loss > 0,
    # 0: no head. Inference never runs it.
    object_dim: int = 0

    @property
    def action_dim(self) -> int:
        return len(self.action_layout)

    @property
    def model_action_dim(self) -> int:
        """Size of one action token the flow head produces."""
        return self.latent_action_dim if self.action_space == "latent" else self.action_dim

    @property
    def tokens_per_camera(self) -> int:
        return self.grid * self.grid

    @property
    def n_obs_tokens(self) -> int:
        return len(self.camera_names) * self.tokens_per_camera

    @property
    def n_ctx_tokens(self) -> int:
        """Context block of one chunk: observation tokens + one state/task token."""
        return self.n_obs_tokens + 1


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    # consecutive chunks per training sample: as many as the KV window holds, so training
    # sees the history lengths inference sees (and several TTT updates)
    train_chunks: int = 8
    val_fraction: float = 0.1
    val_every: int = 200
    val_batches: int = 4
    save_every: int = 500
    num_workers: int = 0
    seed: int = 0
    stats_samples: int = 256  # windows used to compute normalisation statistics
    latent_steps: int = 1500  # latent-action autoencoder steps (action_space: latent)
    # Trim each demonstration's rest tail: the frames at its end whose state stays within this
    # distance (max over the action layout, rad / m / gripper 0..1) of the final state are not
    # trained on (0: keep them). Demonstrations end with the arm settled at home, which is
    # also where the next one starts: "at home -> stay" samples teach a policy to stay put at
    # the start of an episode.
    rest_tail_tolerance: float = 0.0
    # Weight of the privileged object loss (0: off): a head on the observation tokens must
    # predict the object poses a simulated dataset records (docs/dataset.md `objects`). The action
    # loss alone let the AgiBot G1 policy learn the mean reach and not where the cube is.
    object_loss: float = 0.0
    # Exponential moving average of the weights (0: off): the checkpoint's model.safetensors
    # then holds the average, which inference loads, and train_state/ the raw weights resume
    # continues. The decay ramps up as (1 + n) / (10 + n) over the first updates, so a short
    # or fine-tuning run averages over its own steps rather than its start.
    ema_decay: float = 0.0


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "model": {
            "image_size": [32, 32], "encoder": "conv", "conv_channels": 16, "grid": 2,
            "horizon": 8, "d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_ratio": 2,
            "task_buckets": 64, "memory_window": 4, "ttt_expansion": 2, "flow_steps": 4,
        },
        "train": {"steps": 300, "batch_size": 16, "lr": 2e-3, "warmup_steps": 20,
                  "train_chunks": 4,
                  "val_every": 100, "save_every": 100, "stats_samples": 64,
                  "latent_steps": 300},
    },
    "default": {"model": {}, "train": {}},
}


def _read_dataclass(cls: type, sec: Section) -> Any:
    """Fill `cls` from a Section, typed by the dataclass defaults, rejecting unknown keys."""
    default = cls()
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not sec.has(f.name):
            sec.raw(f.name, None)
            continue
        ref = getattr(default, f.name)
        if isinstance(ref, bool):
            values[f.name] = sec.bool(f.name)
        elif isinstance(ref, int):
            values[f.name] = sec.int(f.name)
        elif isinstance(ref, float):
            values[f.name] = sec.float(f.name)
        elif isinstance(ref, str):
            value = sec.raw(f.name)
            if not isinstance(value, str):
                raise sec.error(f.name, f"expected a string, got {value!r}")
            values[f.name] = value
        elif isinstance(ref, tuple):
            value = sec.raw(f.name)
            if not isinstance(value, (list, tuple)):
                raise sec.error(f.name, f"expected a list, got {value!r}")
            values[f.name] = tuple(value)
    sec.finish()
    obj = cls(**values)
    _validate(obj, sec)
    return obj


def _validate(obj: Any, sec: Section) -> None:
    def bad(name: str, allowed: str) -> ConfigError:
        return sec.error(name, f"got {getattr(obj, name)!r}; allowed: {allowed}")

    if isinstance(obj, ModelConfig):
        if obj.encoder not in ENCODERS:
            raise bad("encoder", ", ".join(ENCODERS))
        if obj.action_space not in ACTION_SPACES:
            raise bad("action_space", ", ".join(ACTION_SPACES))
        if obj.encoder_trainable and obj.encoder not in TRAINABLE_ENCODERS:
            raise bad("encoder_trainable",
                      f"false unless encoder is one of {', '.join(TRAINABLE_ENCODERS)}")
        if obj.encoder == "conv_keypoints" and (obj.keypoints < 1 or
                                                 obj.keypoints % (obj.grid * obj.grid)):
            raise bad("keypoints", f"a positive multiple of grid*grid = {obj.grid * obj.grid}")
        if len(obj.image_size) != 2 or not all(
            isinstance(v, int) and v >= 16 for v in obj.image_size
        ):
            raise bad("image_size", "[H, W], integers >= 16")
        for name in ("horizon", "d_model", "n_layers", "n_heads", "mlp_ratio", "grid",
                     "task_buckets", "flow_steps", "ttt_expansion", "latent_action_dim",
                     "conv_channels"):
            if getattr(obj, name) < 1:
                raise bad(name, ">= 1")
        if obj.memory_window < 2:
            raise bad("memory_window", ">= 2 (chunks, the current one included)")
        if obj.d_model % obj.n_heads or (obj.d_model // obj.n_heads) % 2:
            raise bad("n_heads", f"a divisor of d_model={obj.d_model} leaving an even head size")
        if obj.dt <= 0:
            raise bad("dt", "> 0")
        for name in ("p_clean_latent", "p_fast", "p_history_noise", "history_noise_min"):
            if not 0.0 <= getattr(obj, name) <= 1.0:
                raise bad(name, "0 .. 1")
        if obj.p_clean_latent + obj.p_fast > 1.0:
            raise bad("p_fast", f"<= 1 - p_clean_latent ({1 - obj.p_clean_latent:g})")
        if len(obj.latent_beta) != 2 or min(obj.latent_beta) <= 0:
            raise bad("latent_beta", "[a, b] with a, b > 0")
        if not 0.0 <= obj.noise_scale <= 2.0:
            raise bad("noise_scale", "0 .. 2")
        if obj.ttt_lr_init <= 0 or obj.ttt_grad_clip <= 0:
            raise bad("ttt_lr_init" if obj.ttt_lr_init <= 0 else "ttt_grad_clip", "> 0")
        if len(set(obj.camera_names)) != len(obj.camera_names):
            raise bad("camera_names", "distinct names")
        if obj.object_dim < 0:
            raise bad("object_dim", ">= 0")
    else:
        for name in ("steps", "batch_size", "train_chunks", "val_every", "val_batches",
                     "save_every", "stats_samples", "latent_steps"):
            if getattr(obj, name) < 1:
                raise bad(name, ">= 1")
        if obj.lr <= 0:
            raise bad("lr", "> 0")
        if not 0.0 < obj.val_fraction < 1.0:
            raise bad("val_fraction", "between 0 and 1 (exclusive)")
        if obj.rest_tail_tolerance < 0:
            raise bad("rest_tail_tolerance", ">= 0")
        if obj.object_loss < 0:
            raise bad("object_loss", ">= 0")
        if not 0.0 <= obj.ema_decay < 1.0:
            raise bad("ema_decay", "0 (off) or a decay in (0, 1)")
        if obj.num_workers < 0 or obj.warmup_steps < 0:
            raise bad("num_workers" if obj.num_workers < 0 else "warmup_steps", ">= 0")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_config(data: dict[str, Any], file: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """A {base?, model, train} mapping -> validated configs (base = a preset name)."""
    top = Section(data, file)
    base_name = top.choice("base", list(PRESETS), "default") if top.has("base") else None
    model_sec = top.section("model", {})
    train_sec = top.section("train", {})
    top.finish()
    merged = {"model": dict(model_sec.data), "train": dict(train_sec.data)}
    if base_name is not None:
        merged = _merge(PRESETS[base_name], merged)
    model = _read_dataclass(ModelConfig, Section(merged["model"], file, "model"))
    train = _read_dataclass(TrainConfig, Section(merged["train"], file, "train"))
    return model, train


def load_config(name_or_path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """A preset name (tiny, default) or a YAML file."""
    if str(name_or_path) in PRESETS:
        return parse_config(PRESETS[str(name_or_path)], f"<preset {name_or_path}>")
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            f"unknown config {str(name_or_path)!r}; allowed: {', '.join(PRESETS)} "
            "or a path to a .yaml file"
        )
    return parse_config(load_yaml(path), path)


def config_to_dict(model: ModelConfig, train: TrainConfig | None = None) -> dict[str, Any]:
    """Plain YAML-safe mapping (tuples become lists)."""

    def plain(obj: Any) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(obj).items()}

    out: dict[str, Any] = {"model": plain(model)}
    if train is not None:
        out["train"] = plain(train)
    return out


def with_robot(model: ModelConfig, *, robot: str, action_layout: tuple[str, ...],
               camera_names: tuple[str, ...], dt: float) -> ModelConfig:
    """The config with the robot interface filled in (validated again)."""
    out = copy.deepcopy(model)
    out.robot, out.action_layout = robot, tuple(action_layout)
    out.camera_names, out.dt = tuple(camera_names), float(dt)
    if not out.action_layout or not out.camera_names:
        raise ConfigError("model: robot interface needs a non-empty action_layout and cameras")
    _validate(out, Section({}, "<robot interface>", "model"))
    return out


__all__ = [
    "ACTION_SPACES", "ENCODERS", "MEMORIES", "MODES", "PRESETS", "ModelConfig", "TrainConfig",
    "config_to_dict", "load_config", "parse_config", "with_robot",
]
