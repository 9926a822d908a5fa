"""The node graph as separate processes over real DDS (what `ros2 launch` starts), against the
kinematic fake robot: chunks flow, commands reach the controllers, stay within limits at all
times, and stop on e-stop. Slow: four Python processes, one of them loading torch."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState, TimeReference  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from wam_ros.bringup.graph import GraphArgs, NodeSpec, build_graph  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.common import EXECUTOR_ENV  # noqa: E402
from wam_ros.testing.process import (  # noqa: E402
    NodeProcess,
    spin_until,
    start_graph_processes,
)
from wam_ros_msgs.msg import ActionChunk  # noqa: E402

pytestmark = pytest.mark.slow


# the graph spins on rclpy's EventsExecutor where it exists; the multi-threaded executor is the
# fallback for older rclpy (and a choice: WAM_ROS_EXECUTOR)
@pytest.mark.parametrize("robot, scheduler, executor", [
    ("cobot_magic", "async", ""), ("agibot_g1", "sai", ""),
    ("cobot_magic", "sync", "multi_threaded")])
def test_graph_drives_the_robot_within_limits_and_stops(rclpy_context, tmp_path,
                                                        tiny_checkpoint, robot, scheduler,
                                                        executor, monkeypatch):
    if executor:
        monkeypatch.setenv(EXECUTOR_ENV, executor)
    spec = RobotSpec.load(robot)
    procs = start_graph_processes(tmp_path, robot, tiny_checkpoint(robot),
                                  scheduler=scheduler)
    node = rclpy.create_node("graph_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    chunks: list[ActionChunk] = []
    commands: list[tuple[str, np.ndarray]] = []
    commanded: list[np.ndarray] = []
    commanded_t: list[float] = []
    node.create_subscription(ActionChunk, topics.CHUNK_JOINT, chunks.append, topics.CHUNK_QOS)

    def on_commanded(m: JointState) -> None:
        commanded.append(np.array(m.position))
        commanded_t.append(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec)

    node.create_subscription(JointState, topics.COMMANDED, on_commanded, 100)
    for c in spec.controllers:
        if c.type == "joint_trajectory":
            node.create_subscription(
                JointTrajectory, c.topic,
                lambda m, n=c.name: commands.append((n, np.array(m.points[0].positions))), 50)
        else:
            node.create_subscription(Float64MultiArray, c.topic,
                                     lambda m, n=c.name: commands.append((n, np.array(m.data))),
                                     50)
    estop = node.create_publisher(Bool, topics.ESTOP, topics.ESTOP_QOS)
    stopped_at: list[float] = []  # smoother clock: the first report of "stopped"

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.hardware_id == "wam_smoother" and values.get("state") == "stopped" \
                    and not stopped_at:
                stopped_at.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)

    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diagnostics, 10)

    def logs() -> str:
        return "\n".join(f"--- {p.cmd[2]}\n{p.output()}" for p in procs)

    try:
        assert spin_until(executor, lambda: len(chunks) >= 4, 90.0), logs()
        assert all(p.alive() for p in procs), logs()
        # Commands keep flowing (a liveness check, not a rate one: a loaded CI host has
        # starved the smoother to 5 ticks in a second)
        n = len(commanded)
        wanted = n + int(spec.control_rate_hz)
        assert spin_until(executor, lambda: len(commanded) >= wanted, 30.0), logs()

        lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
        q = np.array(commanded)
        assert np.all(q >= lower - 1e-9) and np.all(q <= upper + 1e-9)

        def assert_within_velocity() -> None:
            # Each command moves at most velocity x the time since the previous one (the
            # stamps are the smoother's clock; a message the probe missed under load only
            # doubles the span).
            q, t = np.array(commanded), np.array(commanded_t)
            dq, dt = np.abs(np.diff(q, axis=0)), np.diff(t)[:, None]
            bound = spec.limits_array("velocity") * dt
            worst = np.unravel_index(np.argmax(dq - bound * 1.05), dq.shape)
            assert np.all(dt > 0) and np.all(dq <= bound * 1.05 + 1e-9), (
                f"command {worst[0] + 1} joint {spec.action_layout[worst[1]]}: moved "
                f"{dq[worst]:.5f} rad in {dt[worst[0], 0] * 1e3:.1f} ms "
                f"(bound {bound[worst]:.5f})")

        assert_within_velocity()
        by_controller = {c.name: c for c in spec.controllers}
        for name, values in commands:
            joints = by_controller[name].joints
            lo = np.array([spec.joints[j].lower for j in joints])
            hi = np.array([spec.joints[j].upper for j in joints])
            assert np.all(values >= lo - 1e-9) and np.all(values <= hi + 1e-9), name
        assert {n for n, _ in commands} == set(by_controller)
        last = chunks[-1]
        assert last.space == ActionChunk.SPACE_JOINT_ABSOLUTE
        assert list(last.names) == list(spec.action_layout)

        estop.publish(Bool(data=True))

        # Decelerates within its limits (checked on every command above and below), then
        # holds that pose. The smoother says when it is at rest ("stopped" on /diagnostics, a
        # latched state); a run of equal commands alone is no proof: sync holds between chunks
        # and may start the next one before the e-stop arrives.
        assert spin_until(executor, lambda: bool(stopped_at), 30.0), logs()
        assert spin_until(executor, lambda: sum(t > stopped_at[0] for t in commanded_t) >= 20,
                          30.0), logs()
        assert_within_velocity()
        q, t = np.array(commanded), np.array(commanded_t)
        assert np.ptp(q[t > stopped_at[0]], axis=0).max() < 1e-9, logs()
    finally:
        executor.shutdown()
        node.destroy_node()
        codes = [p.stop() for p in procs]
    assert all(c in (0, -2) for c in codes), (codes, logs())
    assert "Traceback" not in logs(), logs()


def test_composed_bringup_runs_all_nodes_in_one_process(rclpy_context, tmp_path,
                                                        tiny_checkpoint):
    """wam_bringup (launch argument composed:=true): the same four node classes in one
    process, handing observations and chunks over in memory; every topic is still
    published."""
    spec = RobotSpec.load("cobot_magic")
    checkpoint = tiny_checkpoint("cobot_magic")
    (composed,) = build_graph(GraphArgs(checkpoint=str(checkpoint), composed=True))
    assert composed.executable == "wam_bringup" and "__node:=" not in " ".join(
        composed.command())  # each node keeps its own name
    fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot",
                    {"robot": spec.name, "camera_scale": 0.25})
    procs = [NodeProcess(fake.command(), log_path=str(tmp_path / "fake.log")),
             NodeProcess(composed.command(), log_path=str(tmp_path / "bringup.log"))]
    node = rclpy.create_node("composed_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    chunks: list[ActionChunk] = []
    commanded: list[np.ndarray] = []
    node.create_subscription(ActionChunk, topics.CHUNK_JOINT, chunks.append, topics.CHUNK_QOS)
    tags: list[float] = []

    node.create_subscription(JointState, topics.COMMANDED,
                             lambda m: commanded.append(np.array(m.position)), 50)
    node.create_subscription(TimeReference, topics.PLAN_STARTED,
                             lambda m: tags.append(conversions.to_sec(m.time_ref)),
                             topics.APPLIED_QOS)
    try:
        def tagged_plans_seen() -> bool:
            # The first command of each plan names the observation the plan came from. Count
            # the tags that name a chunk the probe received: the probe may match the command
            # topic before the chunk topic (volatile QoS) and miss the first chunks.
            stamps = np.array([conversions.to_sec(c.header.stamp) for c in chunks])
            return len(stamps) > 0 and sum(
                np.abs(stamps - t).min() < 2e-6 for t in tags) >= 2

        assert spin_until(executor, lambda: len(chunks) >= 3 and len(commanded) > 20
                          and tagged_plans_seen(), 90.0), procs[1].output()
        q = np.array(commanded)
        assert np.all(q >= spec.limits_array("lower") - 1e-9)
        assert np.all(q <= spec.limits_array("upper") + 1e-9)
        names = set(node.get_node_names())
        assert {"wam_observation", "wam_policy", "wam_decoder", "wam_smoother"} <= names
    finally:
        executor.shutdown()
        node.destroy_node()
        codes = [p.stop() for p in procs]
    assert all(c in (0, -2) for c in codes), (codes, procs[1].output())
