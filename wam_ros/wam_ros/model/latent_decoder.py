"""Latent actions (Motus-style): a robot-specific autoencoder over action chunks.

Motus predicts embodiment-agnostic latent actions and maps them to a robot's commands with a
decoder aligned on *task-agnostic* data: random motions sampled in the robot's action space,
independent of any task. We do the same with what is reachable offline: the autoencoder is
trained only on random smooth joint motions generated from the robot description (limits and
velocity limits); no demonstration data is involved. The WAM's flow head then learns the
latent codes of the demonstrations (`action_space: latent`), and the decoder node turns them
back into joint commands with `LatentActionDecoder`.

(Motus derives its latent actions from optical flow; no flow model ships offline here, so our
latent is a compressed code of the joint-space chunk itself, conditioned on the joint state.)

Files: CKPT/latent_decoder/{model.safetensors, config.yaml}.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from wam_ros.core.robot import RobotSpec

HIDDEN = 256


@dataclass
class LatentActionConfig:
    robot: str
    horizon: int
    action_dim: int
    latent_dim: int
    dt: float
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


def _mlp(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(),
                         nn.Linear(HIDDEN, o))


class LatentActionAutoencoder(nn.Module):
    """encode(delta (N, H, D), state (N, D)) -> latent (N, H, Dl);
    decode(latent, state) -> delta (N, H, D). Deltas are to the joint state at the chunk's
    observation, in action units (grippers normalised)."""

    def __init__(self, cfg: LatentActionConfig, lower: np.ndarray, upper: np.ndarray,
                 step_scale: np.ndarray) -> None:
        super().__init__()
        self.cfg = cfg
        h, d, dl = cfg.horizon, cfg.action_dim, cfg.latent_dim
        self.enc = _mlp(h * d + d, h * dl)
        self.dec = _mlp(h * dl + d, h * d)
        self.register_buffer("lower", torch.as_tensor(lower, dtype=torch.float32))
        self.register_buffer("upper", torch.as_tensor(upper, dtype=torch.float32))
        # largest travel per chunk step (velocity limit * dt * step index) normalises deltas
        self.register_buffer("scale", torch.as_tensor(step_scale, dtype=torch.float32))

    def _state(self, state: torch.Tensor) -> torch.Tensor:
        return (2 * state - self.lower - self.upper) / (self.upper - self.lower)

    def encode(self, delta: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n = delta.shape[0]
        x = torch.cat([(delta / self.scale).flatten(1), self._state(state)], dim=1)
        return self.enc(x).view(n, self.cfg.horizon, self.cfg.latent_dim)

    def decode(self, latent: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n = latent.shape[0]
        x = torch.cat([latent.flatten(1), self._state(state)], dim=1)
        return self.dec(x).view(n, self.cfg.horizon, self.cfg.action_dim) * self.scale


def _robot_ranges(spec: RobotSpec, horizon: int, dt: float,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    grip = spec.gripper_mask()
    lower = np.where(grip, 0.0, spec.limits_array("lower"))
    upper = np.where(grip, 1.0, spec.limits_array("upper"))
    vel = spec.limits_array("velocity")
    # gripper velocity in normalised units per second
    joint_span = spec.limits_array("upper") - spec.limits_array("lower")
    vel = np.where(grip, vel / joint_span, vel)
    step_scale = vel[None] * dt * np.arange(1, horizon + 1)[:, None]  # (H, D)
    return lower, upper, vel, step_scale


def random_motions(spec: RobotSpec, n: int, horizon: int, dt: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Task-agnostic random motions: (states (n, D), deltas (n, H, D)) in action units.

    Start states uniform within the limits; per-joint velocity profiles are smooth (a constant
    plus a random sinusoid, up to the velocity limit); positions are clipped to the limits.
    """
    lower, upper, vel, _ = _robot_ranges(spec, horizon, dt)
    d = len(lower)
    state = rng.uniform(lower, upper, (n, d))
    t = np.arange(horizon)[None, :, None] / horizon
    a0 = rng.uniform(-0.6, 0.6, (n, 1, d))
    a1 = rng.uniform(-0.4, 0.4, (n, 1, d))
    freq = rng.uniform(0.0, 1.5, (n, 1, d))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, d))
    still = rng.random((n, 1, d)) < 0.15  # some joints hold still
    v = np.where(still, 0.0, (a0 + a1 * np.sin(2 * np.pi * freq * t + phase)) * vel)
    pos = np.clip(state[:, None] + np.cumsum(v * dt, axis=1), lower, upper)
    return state.astype(np.float32), (pos - state[:, None]).astype(np.float32)


def train_latent_autoencoder(cfg: LatentActionConfig, device: torch.device | str = "cpu",
                             progress: bool = True) -> LatentActionAutoencoder:
    spec = RobotSpec.load(cfg.robot)
    lower, upper, _, scale = _robot_ranges(spec, cfg.horizon, cfg.dt)
    torch.manual_seed(cfg.seed)
    model = LatentActionAutoencoder(cfg, lower, upper, scale).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    for step in tqdm(range(cfg.steps), desc="latent actions", disable=not progress):
        states, deltas = random_motions(spec, cfg.batch_size, cfg.horizon, cfg.dt, rng)
        s = torch.from_numpy(states).to(device)
        dlt = torch.from_numpy(deltas).to(device)
        recon = model.decode(model.encode(dlt, s), s)
        loss = (((recon - dlt) / model.scale) ** 2).mean()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * (1 - step / cfg.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def save_latent_autoencoder(model: LatentActionAutoencoder, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    tmp = out / "config.yaml.tmp"
    tmp.write_text(yaml.safe_dump({"format": "wam_ros.latent_decoder", "version": 1,
                                   **asdict(model.cfg)}, sort_keys=False))
    os.replace(tmp, out / "config.yaml")
    return out


def load_latent_autoencoder(path: str | Path, device: str = "cpu") -> LatentActionAutoencoder:
    """From a latent_decoder/ folder or a WAM checkpoint that contains one."""
    path = Path(path)
    if (path / "latent_decoder" / "config.yaml").is_file():
        path = path / "latent_decoder"
    cfg_path = path / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no latent-action decoder (config.yaml missing); "
                                "train a checkpoint with action_space: latent")
    doc = yaml.safe_load(cfg_path.read_text())
    if doc.pop("format", None) != "wam_ros.latent_decoder" or doc.pop("version", None) != 1:
        raise ValueError(f"{cfg_path}: not a wam_ros latent decoder config")
    cfg = LatentActionConfig(**doc)
    spec = RobotSpec.load(cfg.robot)
    lower, upper, _, scale = _robot_ranges(spec, cfg.horizon, cfg.dt)
    model = LatentActionAutoencoder(cfg, lower, upper, scale)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.to(device).eval()


def ensure_latent_autoencoder(mcfg: Any, out_dir: Path, device: torch.device,
                              progress: bool = True, log: Any = print,
                              steps: int | None = None, save: bool = True,
                              ) -> LatentActionAutoencoder:
    """The checkpoint's autoencoder, trained on random motions first if it is not there
    (deterministic from the seed, so every DDP rank trains the same one; only `save` ranks
    write it)."""
    if (out_dir / "config.yaml").is_file():
        model = load_latent_autoencoder(out_dir, str(device))
        if (model.cfg.horizon, model.cfg.latent_dim) == (mcfg.horizon, mcfg.latent_action_dim):
            return model
    cfg = LatentActionConfig(robot=mcfg.robot, horizon=mcfg.horizon,
                             action_dim=mcfg.action_dim, latent_dim=mcfg.latent_action_dim,
                             dt=mcfg.dt)
    if steps is not None:
        cfg.steps = steps
    log(f"training the latent-action autoencoder on random motions of {mcfg.robot} "
        f"({cfg.steps} steps)")
    model = train_latent_autoencoder(cfg, device, progress)
    if save:
        save_latent_autoencoder(model, out_dir)
    return model


class LatentActionDecoder:
    """ROS-free decoder the decoder node calls for LATENT chunks.

        decoder = LatentActionDecoder.load(checkpoint_dir)
        absolute = decoder.decode(chunk.actions, chunk.reference)

    decode(latent (H, Dl), joint_state (D,)) -> (H, D) float64 *absolute* target positions in
    the robot's action layout with grippers normalised 0..1 (joints rad / m), i.e. the units of
    a JOINT_ABSOLUTE chunk, clipped to the joint limits. `joint_state` is the state the chunk
    was conditioned on in joint units (Observation.joint_positions, Chunk.reference).
    `decode_delta` returns the offsets to robot.joint_to_action(joint_state) instead.
    """

    def __init__(self, model: LatentActionAutoencoder) -> None:
        self.model = model
        self.horizon = model.cfg.horizon
        self.latent_dim = model.cfg.latent_dim
        self.action_dim = model.cfg.action_dim
        self.robot = RobotSpec.load(model.cfg.robot)

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> LatentActionDecoder:
        return cls(load_latent_autoencoder(checkpoint_dir))

    def _state(self, joint_state: np.ndarray) -> np.ndarray:
        state = np.asarray(joint_state, np.float64)
        if state.shape != (self.action_dim,) or not np.all(np.isfinite(state)):
            raise ValueError(f"joint_state {state.shape}; expected ({self.action_dim},) finite")
        return self.robot.joint_to_action(state)

    def decode_delta(self, latent: np.ndarray, joint_state: np.ndarray) -> np.ndarray:
        latent = np.asarray(latent, np.float32)
        if latent.shape != (self.horizon, self.latent_dim):
            raise ValueError(f"latent chunk {latent.shape}; expected "
                             f"({self.horizon}, {self.latent_dim})")
        state = torch.from_numpy(self._state(joint_state).astype(np.float32))[None]
        with torch.no_grad():
            out = self.model.decode(torch.from_numpy(latent)[None], state)
        return out[0].numpy().astype(np.float64)

    def decode(self, latent: np.ndarray, joint_state: np.ndarray) -> np.ndarray:
        absolute = self._state(joint_state)[None] + self.decode_delta(latent, joint_state)
        return np.clip(absolute, self.model.lower.numpy(), self.model.upper.numpy())
