"""Graph-paced simulation: the pace drops while the graph's commands are late, recovers once
they are on time, stays within [floor, requested]; the sim node reports it in its status."""

from __future__ import annotations

import json
import time

import pytest

from wam_ros.core.config import ConfigError
from wam_ros.sim.pace import LATE_SHARE, PACE_DOWN, PACE_FLOOR, PACE_UP, GraphPace


def _period(pace: GraphPace, t0: float, command_every: float, steps: int = 100,
            dt: float = 0.004) -> float:
    """One adapt period of `steps` sim steps with a command every `command_every` s."""
    t, next_cmd = t0, t0
    for _ in range(steps):
        if t >= next_cmd - 1e-12:
            pace.on_command(t)
            next_cmd += command_every
        t += dt
        pace.on_step(t)
    pace.adapt()
    return t


def test_default_pace_gives_a_graph_stall_at_most_one_control_period():
    """demo / eval's default real-time factor: GRAPH_STALL_S of wall time is one control
    period of sim time, capped; an explicit --real-time-factor wins."""
    import argparse

    from wam_ros.apps.closed_loop import (
        GRAPH_STALL_S,
        MAX_REAL_TIME_FACTOR,
        default_real_time_factor,
    )
    from wam_ros.apps.demo import real_time_factor

    for robot, rate, expected in (("agibot_g1", 100.0, 0.2), ("cobot_magic", 50.0, 0.4)):
        assert default_real_time_factor(rate) == pytest.approx(expected)
        assert default_real_time_factor(rate) * GRAPH_STALL_S == pytest.approx(1.0 / rate)
        args = argparse.Namespace(robot=robot, real_time_factor=None)
        assert real_time_factor(args) == pytest.approx(expected)
        args.real_time_factor = 0.7
        assert real_time_factor(args) == 0.7
    assert default_real_time_factor(5.0) == MAX_REAL_TIME_FACTOR  # slow control: capped
    with pytest.raises(ValueError, match="control_rate_hz"):
        default_real_time_factor(0.0)


def test_a_stalled_homing_waits_sim_time_not_the_wall_backstop():
    """ClosedLoop._reached: the limit is sim seconds of the status's clock, which restarts at a
    scene reset; the wall-time backstop (limit / slowest pace) only for a stopped simulator."""
    from wam_ros.apps.closed_loop import ClosedLoop

    class FakeSim:  # each spin: 0.1 s of sim time; a scene reset at 2.0 s
        def __init__(self, loop):
            self.loop, self.spins = loop, 0

        def spin_once(self, timeout_sec):
            self.spins += 1
            t = 0.1 * self.spins
            self.loop.status = {"elapsed": 50.0 + t if t < 2.0 else t - 2.0}

    loop = ClosedLoop.__new__(ClosedLoop)  # the probe's waiting logic without processes
    loop.procs, loop._slow, loop.status = [], 1000.0, {"elapsed": 50.0}
    loop.executor = FakeSim(loop)
    wall = time.monotonic()
    assert not loop._reached(lambda: False, 10.0)
    assert time.monotonic() - wall < 5.0  # far from the 10 000 s backstop
    # 10 s of sim time: 2 s before the reset, 8 after it (the reset itself adds nothing)
    assert loop.executor.spins == pytest.approx(100, abs=2)
    loop.executor.spins = 20  # the clock goes on from 0 after the reset
    loop.status = {"elapsed": 0.0}
    assert loop._reached(lambda: loop.executor.spins >= 25, 10.0)
    assert loop.executor.spins == 25


def test_late_commands_slow_the_pace_and_on_time_ones_restore_it():
    pace = GraphPace(target=0.5, max_command_age=0.025)
    t = _period(pace, 0.0, command_every=0.01)
    assert pace.pace == 0.5  # on time at the requested pace: unchanged
    t = _period(pace, t, command_every=0.04)  # a command every 40 ms: 25 ms exceeded
    assert pace.pace == pytest.approx(0.5 * PACE_DOWN)
    for _ in range(50):
        t = _period(pace, t, command_every=0.04)
    assert pace.pace == pytest.approx(0.5 * PACE_FLOOR)  # never below the floor
    t = _period(pace, t, command_every=0.01)
    assert pace.pace == pytest.approx(0.5 * PACE_FLOOR * PACE_UP)
    for _ in range(50):
        t = _period(pace, t, command_every=0.01)
    assert pace.pace == 0.5  # never above the requested pace


def test_a_rare_late_step_is_tolerated_and_an_idle_graph_is_not_late():
    pace = GraphPace(target=1.0, max_command_age=0.025)
    # one missed command (two late steps) in 400 steps, under LATE_SHARE, keeps the pace
    t = 0.0
    pace.on_command(t)
    for k in range(400):
        t += 0.004
        if k % 4 == 0 and k != 200:
            pace.on_command(t)
        pace.on_step(t)
    assert 0 < pace.late <= LATE_SHARE * pace.steps
    pace.adapt()
    assert pace.pace == 1.0
    # commands stop: late at first (a starved graph looks the same), but after
    # COMMANDS_IDLE_S the graph is taken as not commanding (paused, stopped): nothing counts
    for _ in range(300):
        t += 0.004
        pace.on_step(t)
    pace.adapt()
    slowed = pace.pace
    assert slowed < 1.0
    for _ in range(300):
        t += 0.004
        pace.on_step(t)
    assert pace.steps == 0
    pace.adapt()
    assert pace.pace == slowed
    # before any command nothing is counted either
    fresh = GraphPace(target=1.0, max_command_age=0.025)
    fresh.on_step(5.0)
    assert fresh.steps == 0


def test_a_fixed_pace_never_changes_and_a_negative_age_is_refused():
    pace = GraphPace(target=0.5, max_command_age=0.0)
    assert not pace.enabled
    _period(pace, 0.0, command_every=0.5)
    assert pace.pace == 0.5
    with pytest.raises(ConfigError, match="max_command_age_s"):
        GraphPace(target=0.5, max_command_age=-0.01)


def test_sim_node_slows_down_for_a_late_graph(rclpy_context, tmp_path, monkeypatch):
    """A 'graph' that commands every 0.1 s wall (far too seldom for a 25 ms limit) makes the
    sim node's pace drop below the requested 1.0; commanding every control period brings it
    back."""
    pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Float64MultiArray, String

    from wam_ros.core.robot import RobotSpec
    from wam_ros.nodes import topics
    from wam_ros.testing.process import NodeProcess, python_module_cmd, spin_until

    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load("agibot_g1")
    arm = next(c for c in spec.controllers if c.type != "joint_trajectory")
    proc = NodeProcess(python_module_cmd(
        "wam_ros.nodes.sim_node", "--ros-args", "-p", "robot:=agibot_g1",
        "-p", "camera_width:=32", "-p", "camera_height:=32", "-p", "real_time_factor:=1.0",
        "-p", "max_command_age_s:=0.025"), log_path=str(tmp_path / "sim.log"))
    node = None
    try:
        import rclpy

        node = rclpy.create_node("pace_probe", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        status: list[dict] = []
        node.create_subscription(String, topics.SIM_STATUS,
                                 lambda m: status.append(json.loads(m.data)), 10)
        pub = node.create_publisher(Float64MultiArray, arm.topic, topics.COMMAND_QOS)
        home = Float64MultiArray(data=[float(spec.home[j]) for j in arm.joints])
        assert spin_until(executor, lambda: bool(status) and pub.get_subscription_count() > 0,
                          60.0), proc.output()
        assert status[-1]["pace"] == 1.0

        def command_for(seconds: float, every: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pub.publish(home)
                spin_until(executor, lambda: False, every)

        command_for(2.0, every=0.1)
        slowed = status[-1]["pace"]
        assert slowed < 1.0, (status[-1], proc.output())
        command_for(4.0, every=0.002)
        assert status[-1]["pace"] > slowed, (status[-1], proc.output())
    finally:
        if node is not None:
            node.destroy_node()
        assert proc.stop() == 0, proc.output()
