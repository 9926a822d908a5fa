"""A small synthetic episode dataset (data.dataset format) for tests and smoke runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_writer import DatasetWriter


def make_synthetic_dataset(root: str | Path, robot: Any, n_episodes: int = 8,
                           length: int = 60, image_size: tuple[int, int] = (32, 32),
                           seed: int = 0, objects: bool = False) -> Path:
    """A small learnable dataset for tests and smoke runs (not a simulator).

    Each episode moves the joints from its task's start towards its task's goal (three tasks,
    start and goal jittered per episode) with a first-order controller; every camera shows one
    blob whose position encodes the goal (two joints) and one that encodes the current state
    (two other joints), so both the next observation and the actions are predictable from the
    images, the state and the task. `objects`: also record the goal blob of the first camera
    as an object pose ("goal": x, y in [-1, 1] image units, z = yaw = 0).
    """
    rng = np.random.default_rng(seed)
    lo, hi = robot.limits_array("lower"), robot.limits_array("upper")
    grip = robot.gripper_mask()
    lo = np.where(grip, 0.0, lo)
    hi = np.where(grip, 1.0, hi)
    mid, span = (lo + hi) / 2, (hi - lo) / 2
    columns = ("goal.x", "goal.y", "goal.z", "goal.yaw") if objects else ()
    info = DatasetInfo(robot.name, tuple(robot.action_layout), tuple(robot.camera_names),
                       tuple(image_size), robot.action_dt, columns)
    writer = DatasetWriter(root, info, part_frames=max(8, length // 2))
    h, w = image_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def blob(u: float, v: float) -> np.ndarray:  # u, v in [-1, 1]
        cy, cx = (v * 0.4 + 0.5) * h, (u * 0.4 + 0.5) * w
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.08 * h) ** 2))

    task_goals = [mid + span * rng.uniform(-0.5, 0.5, mid.shape) for _ in range(3)]
    task_starts = [mid + span * rng.uniform(-0.5, 0.5, mid.shape) for _ in range(3)]
    for e in range(n_episodes):
        goal = task_goals[e % 3] + span * rng.uniform(-0.05, 0.05, mid.shape)
        state = task_starts[e % 3] + span * rng.uniform(-0.1, 0.1, mid.shape)
        gn = (goal - mid) / span  # in [-0.5, 0.5]
        with writer.new_episode(task=f"reach goal {'abc'[e % 3]}") as ep:
            for t in range(length):
                sn = (state - mid) / span
                images = {}
                for ci, cam in enumerate(robot.camera_names):
                    j = (2 * ci) % (len(mid) - 3)
                    img = np.zeros((h, w, 3), np.float32)
                    img[..., 0] = blob(2 * gn[j], 2 * gn[j + 1])
                    img[..., 1] = blob(2 * sn[j + 2], 2 * sn[j + 3])
                    img[..., 2] = 0.3 * blob(2 * sn[j], 2 * gn[j + 2])
                    images[cam] = (img * 255).clip(0, 255).astype(np.uint8)
                action = state + np.clip(0.15 * (goal - state), -0.05 * span, 0.05 * span)
                action += rng.normal(0, 0.002, action.shape) * span
                action = np.clip(action, lo, hi)
                pose = np.array([2 * gn[0], 2 * gn[1], 0.0, 0.0]) if objects else None
                ep.add(t * robot.action_dt, images, state, action, pose)
                state = action
    return Path(root)


__all__ = ["make_synthetic_dataset"]
