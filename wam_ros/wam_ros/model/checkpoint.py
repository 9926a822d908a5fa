"""Checkpoints: a directory that never needs unpickling.

    CKPT/config.yaml         model (+ train) config, format version
    CKPT/model.safetensors   all weights and buffers (normalisation statistics included)
    CKPT/stats.safetensors   normalisation statistics alone (runtimes without torch read these)
    CKPT/onnx/               graphs written by `wam-ros export` (optional)
    CKPT/latent_decoder/     latent-action autoencoder (action_space == latent only)

Statistics (all float32): feat_mean/feat_std (encoder channels), state_mean/state_std (action
layout, grippers normalised), action_mean/action_std (what the flow head produces: absolute
actions, deltas to the state, or latent actions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from wam_ros.core.config import ConfigError
from wam_ros.model.config import ModelConfig, TrainConfig, config_to_dict, parse_config
from wam_ros.model.wam import WorldActionModel

FORMAT = "wam_ros.checkpoint"
VERSION = 1
STAT_NAMES = ("feat_mean", "feat_std", "state_mean", "state_std", "action_mean", "action_std")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(model: WorldActionModel, out_dir: str | Path,
                    train_cfg: TrainConfig | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out / "model.safetensors")
    stats = {n: state[n].numpy().astype(np.float32) for n in STAT_NAMES}
    save_numpy(stats, str(out / "stats.safetensors"))
    doc = {"format": FORMAT, "version": VERSION, **config_to_dict(model.cfg, train_cfg)}
    if extra:
        doc["info"] = extra
    _atomic_write_text(out / "config.yaml", yaml.safe_dump(doc, sort_keys=False))
    return out


def read_checkpoint_config(ckpt_dir: str | Path) -> tuple[ModelConfig, TrainConfig]:
    path = Path(ckpt_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt_dir}: not a checkpoint (no config.yaml)")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: format: expected {FORMAT!r}, got "
                          f"{doc.get('format') if isinstance(doc, dict) else doc!r}")
    if doc.get("version") != VERSION:
        raise ConfigError(f"{path}: version: got {doc.get('version')!r}; allowed: {VERSION}")
    body = {k: v for k, v in doc.items() if k in ("model", "train")}
    return parse_config(body, path)


def load_stats(ckpt_dir: str | Path) -> dict[str, np.ndarray]:
    return dict(load_numpy(str(Path(ckpt_dir) / "stats.safetensors")))


def load_model(ckpt_dir: str | Path, device: str = "cpu") -> WorldActionModel:
    """Model in eval mode; weights from safetensors only."""
    cfg, _ = read_checkpoint_config(ckpt_dir)
    model = WorldActionModel(cfg)
    state = load_file(str(Path(ckpt_dir) / "model.safetensors"), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt_dir}: weights do not match the config: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(torch.device(device)).eval()
