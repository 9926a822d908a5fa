"""One short closed-loop episode through the real multi-process graph: MuJoCo sim node ->
observation -> policy (shipped default checkpoint, async) -> decoder -> smoother -> mock
controllers, on sim time; the episode protocol of `wam-ros demo` / `wam-ros eval`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("rclpy")

from wam_ros.closed_loop import ClosedLoop, prepared_checkpoint, summarise
from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.model.testing import make_tiny_checkpoint
from wam_ros.paths import resolve_checkpoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _commands_within_limits(spec: RobotSpec, loop: ClosedLoop) -> None:
    assert loop.trace is not None and len(loop.trace.commanded) > 20
    q = np.array([c[1] for c in loop.trace.commanded])
    assert np.all(q >= spec.limits_array("lower") - 1e-9)
    assert np.all(q <= spec.limits_array("upper") + 1e-9)


def test_episode_protocol_through_the_graph(ros_domain, tmp_path, monkeypatch) -> None:
    """Two episodes with an untrained model: pause, home, scene reset (new seed), run; plans
    reach the controllers within limits, and nothing is solved by accident."""
    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load("cobot_magic")
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt", spec.name)
    loop = ClosedLoop(tmp_path / "run", spec.name, "pick_place", checkpoint, backend="torch",
                      seed=7, log=lambda m: None)
    try:
        first = loop.episode(timeout_s=3.0, trace=True)
        _commands_within_limits(spec, loop)
        second = loop.episode(timeout_s=2.0)
    finally:
        loop.close()
    assert first.seed != second.seed  # the scene was re-randomised
    assert not first.success and first.completion_s == 3.0
    assert len(first.latencies_ms) >= 3 and min(first.latencies_ms) > 0.0
    assert second.sim_s >= 2.0 and len(second.latencies_ms) >= 2


def test_default_checkpoint_picks_and_places_in_closed_loop(ros_domain, tmp_path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load("cobot_magic")
    try:
        checkpoint = resolve_checkpoint("", spec.name)
    except ConfigError:
        pytest.skip("no default checkpoint shipped for cobot_magic yet (issue 5)")
    checkpoint = prepared_checkpoint(checkpoint, "onnxruntime", tmp_path)
    # sync: the scheduler the default solves most reliably through the graph today (async
    # loses success on the same seeds; see the issue 5 note); up to two episodes, one of which
    # must get the cube off the table
    loop = ClosedLoop(tmp_path, spec.name, "pick_place", checkpoint, scheduler="sync",
                      backend="onnxruntime", seed=1001, log=lambda m: None)
    results = []
    try:
        for _ in range(2):
            results.append(loop.episode(timeout_s=15.0, trace=not results))
            if len(results) == 1:
                _commands_within_limits(spec, loop)
            if results[-1].success or results[-1].phase in ("lifted", "in_bin"):
                break
    finally:
        loop.close()
    assert all(len(r.latencies_ms) >= 5 for r in results), "plans did not reach the controllers"
    # the policy sees the cube and acts on it: it got at least as far as lifting it
    assert any(r.success or r.phase in ("lifted", "in_bin") for r in results), results
    s = summarise(results)
    assert s["episodes"] == len(results) and np.isfinite(s["latency_ms.p50"])
