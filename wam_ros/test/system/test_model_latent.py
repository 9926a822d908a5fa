"""Latent action space (Motus-style): an autoencoder trained only on task-agnostic random
motions reconstructs unseen motions; a latent-space WAM emits LATENT chunks that the
ROS-free decoder turns into joint targets within the limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import ActionSpace
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.synthetic_dataset import make_synthetic_dataset
from wam_ros.model.config import load_config
from wam_ros.model.latent_decoder import (
    LatentActionConfig,
    LatentActionDecoder,
    random_motions,
    train_latent_autoencoder,
)
from wam_ros.model.train import train
from wam_ros.runtime import load_policy
from wam_ros.testing.checkpoints import fake_observation

pytestmark = pytest.mark.slow
ROBOT = "cobot_magic"


def test_autoencoder_trained_on_random_motions_generalises() -> None:
    spec = RobotSpec.load(ROBOT)
    cfg = LatentActionConfig(robot=ROBOT, horizon=8, action_dim=14, latent_dim=8,
                             dt=spec.action_dt, steps=300, batch_size=128)
    model = train_latent_autoencoder(cfg, progress=False)
    states, deltas = random_motions(spec, 256, 8, spec.action_dt, np.random.default_rng(99))
    with torch.no_grad():
        s, d = torch.from_numpy(states), torch.from_numpy(deltas)
        recon = model.decode(model.encode(d, s), s)
    err = ((recon - d) / model.scale).abs().mean()
    baseline = (d / model.scale).abs().mean()  # predicting "no motion"
    assert err < 0.5 * baseline, (float(err), float(baseline))


def test_latent_space_policy_and_decoder(tmp_path) -> None:
    spec = RobotSpec.load(ROBOT)
    data = make_synthetic_dataset(tmp_path / "data", spec, n_episodes=4, length=24)
    model_cfg, train_cfg = load_config("tiny")
    model_cfg.action_space = "latent"
    train_cfg.steps, train_cfg.batch_size, train_cfg.latent_steps = 4, 4, 50
    ckpt = tmp_path / "ckpt"
    train(data, (model_cfg, train_cfg), ckpt, progress=False, log=lambda *_: None)
    policy = load_policy(ckpt, mode="fast")
    assert policy.meta.action_space == ActionSpace.LATENT
    obs = fake_observation(ROBOT, policy.meta.image_size, 0)
    chunk = policy.infer(obs)
    assert chunk.space == ActionSpace.LATENT
    assert chunk.actions.shape == (policy.meta.horizon, policy.meta.latent_action_dim)
    decoder = LatentActionDecoder.load(ckpt)
    absolute = decoder.decode(chunk.actions, chunk.reference)
    assert absolute.shape == (policy.meta.horizon, 14) and np.all(np.isfinite(absolute))
    lower = np.where(spec.gripper_mask(), 0.0, spec.limits_array("lower"))
    upper = np.where(spec.gripper_mask(), 1.0, spec.limits_array("upper"))
    assert np.all(absolute >= lower - 1e-9) and np.all(absolute <= upper + 1e-9)
    # the decoder inverts the encoder on a demonstration chunk it never trained on
    reader = EpisodeReader(data)
    ep = reader.episode(0)
    state, actions = ep["state"][0], ep["action"][:8]  # action units
    enc = decoder.model
    with torch.no_grad():
        lat = enc.encode(torch.from_numpy(actions - state)[None], torch.from_numpy(state)[None])
    back = decoder.decode(lat[0].numpy(), spec.action_to_joint(state))  # joint units in
    assert np.abs(back - actions).max() < np.abs(actions - state).max() + 0.05
    with pytest.raises(ValueError, match="latent chunk"):
        decoder.decode(np.zeros((3, 3)), state)
