"""Small, fast fixtures for tests and demos: a tiny untrained checkpoint and fake observations.

`make_tiny_checkpoint` builds the `tiny` preset for a robot, fills plausible normalisation
statistics and writes a real checkpoint (what `wam-ros train` writes, minus the training), so
runtime tests exercise the same loading path as deployment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Observation
from wam_ros.model.checkpoint import save_checkpoint
from wam_ros.model.config import load_config, with_robot
from wam_ros.model.wam import WorldActionModel


def tiny_model(robot: str = "cobot_magic", seed: int = 0, **overrides: object
               ) -> WorldActionModel:
    spec = RobotSpec.load(robot)
    cfg, _ = load_config("tiny")
    cfg = with_robot(cfg, robot=spec.name, action_layout=spec.action_layout,
                     camera_names=spec.camera_names, dt=spec.action_dt)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    model = WorldActionModel(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # statistics in the range real data gives
        model.state_mean.copy_(torch.as_tensor(spec.joint_to_action(spec.home_vector())))
        model.state_std.fill_(0.3)
        model.action_std.fill_(0.05)
        imgs = torch.rand(4, 3, *cfg.image_size, generator=gen) * 255
        feats = model.encoder(imgs).flatten(0, 1)
        model.feat_mean.copy_(feats.mean(0))
        model.feat_std.copy_(feats.std(0).clamp(min=1e-3))
    return model


def make_tiny_checkpoint(out_dir: str | Path, robot: str = "cobot_magic", seed: int = 0,
                         **overrides: object) -> Path:
    model = tiny_model(robot, seed, **overrides)
    return save_checkpoint(model, out_dir)


def fake_observation(robot: str | RobotSpec, image_size: tuple[int, int], index: int = 0,
                     task: str = "reach goal a", seed: int = 0) -> Observation:
    """Deterministic observation number `index` of a fake episode."""
    spec = robot if isinstance(robot, RobotSpec) else RobotSpec.load(robot)
    rng = np.random.default_rng((seed, index))
    h, w = image_size
    images = {c: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for c in spec.camera_names}
    lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
    joints = np.clip(spec.home_vector() + 0.05 * np.sin(0.3 * index + np.arange(len(lo))),
                     lo, hi)
    return Observation(stamp=0.5 * index, images=images, joint_positions=joints, task=task,
                       sequence=index)
