"""What a training batch becomes: window samples stacked into tensors (`collate`), the targets
the heads learn (`model_actions`: absolute, delta or latent actions; `object_targets`: object
poses with a quarter-turn-periodic yaw) and the normalised inputs of one step (`prepare`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wam_ros.model.config import ModelConfig
from wam_ros.model.wam import WorldActionModel


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
