"""Closed loop with the model behind `wam-ros serve` (its own process, the openpi protocol over
the loopback) and the policy node with backend remote, what `wam-ros demo --served` runs: the
shipped default's plans reach the controllers within limits and drive the task's arm."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("rclpy")

from wam_ros.apps.closed_loop import ClosedLoop
from wam_ros.cli.serve import ServeProcess
from wam_ros.core.robot import RobotSpec
from wam_ros.paths import resolve_checkpoint

pytestmark = pytest.mark.slow


def test_served_default_checkpoint_drives_the_task_arm_through_the_graph(
        ros_domain, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load("cobot_magic")
    checkpoint = resolve_checkpoint("", spec.name)  # shipped: a missing one fails
    with ServeProcess(checkpoint, tmp_path / "serve.log", backend="torch", nice=10) as url:
        loop = ClosedLoop(tmp_path / "run", spec.name, "pick_place", checkpoint,
                          scheduler="async", backend="remote", seed=1001, log=lambda m: None,
                          policy_params={"server_url": url, "server_mapping": "wam_ros"})
        try:
            result = loop.episode(timeout_s=8.0, trace=True)
            q = np.array([c[1] for c in loop.trace.commanded])
        finally:
            loop.close()
    assert len(result.latencies_ms) >= 5, "plans did not reach the controllers"
    assert len(q) > 20
    assert np.all(q >= spec.limits_array("lower") - 1e-9)
    assert np.all(q <= spec.limits_array("upper") + 1e-9)
    moved = np.abs(q - spec.home_vector()).max(axis=0)
    arm = ~spec.gripper_mask()
    right_joints = next(a.joints for a in spec.arms if a.name == "right")
    right = np.array([n in right_joints for n in spec.action_layout])
    assert moved[right].max() > 0.3, moved  # reached out
    assert moved[arm & ~right].max() < 0.05, moved  # the left arm stays home
