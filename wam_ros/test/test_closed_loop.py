"""One short closed-loop episode through the real multi-process graph: MuJoCo sim node ->
observation -> policy (shipped default checkpoint, async) -> decoder -> smoother -> mock
controllers, on sim time; the episode protocol of `wam-ros demo` / `wam-ros eval`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("rclpy")

from wam_ros.closed_loop import ClosedLoop, summarise  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.paths import resolve_checkpoint  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_default_checkpoint_picks_and_places_in_closed_loop(ros_domain, tmp_path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load("cobot_magic")
    checkpoint = resolve_checkpoint("", spec.name)  # the shipped default must exist
    loop = ClosedLoop(tmp_path, spec.name, "pick_place", checkpoint, scheduler="async",
                      backend="onnxruntime", seed=4242, log=lambda m: None)
    try:
        result = loop.episode(timeout_s=15.0, trace=True)
        trace = loop.trace
    finally:
        loop.close()
    assert trace is not None and len(trace.commanded) > 50
    q = np.array([c[1] for c in trace.commanded])
    assert np.all(q >= spec.limits_array("lower") - 1e-9)
    assert np.all(q <= spec.limits_array("upper") + 1e-9)
    assert len(result.latencies_ms) >= 5, "plans did not reach the controllers"
    # the policy sees the cube and acts on it: it got at least as far as lifting it
    assert result.success or result.phase in ("lifted", "in_bin"), result
    s = summarise([result])
    assert s["episodes"] == 1 and np.isfinite(s["latency_ms.p50"])
