"""Smoother node + kinematic fake robot in one process: chunks in, ros2_control commands out,
within limits at all times; e-stop decelerates to a latched hold until re-enabled."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from wam_ros.core.pipeline import PipelineState  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.core.types import ActionSpace, Chunk  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.fake_robot import FakeRobotNode  # noqa: E402
from wam_ros.nodes.smoother_node import SmootherNode  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402


@pytest.mark.parametrize(("robot", "velocities"), [("cobot_magic", False),
                                                   ("agibot_g1", False),
                                                   ("cobot_magic", True)])
def test_commands_follow_chunks_within_limits_and_stop_on_estop(rclpy_context, robot,
                                                                velocities):
    spec = RobotSpec.load(robot)
    params = [Parameter("robot", value=robot)]
    smoother = SmootherNode(context=rclpy_context, parameter_overrides=[
        *params, Parameter("trajectory_velocities", value=velocities)])
    fake = FakeRobotNode(context=rclpy_context,
                         parameter_overrides=[*params, Parameter("camera_scale", value=0.05)])
    client = rclpy.create_node("test_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    for n in (smoother, fake, client):
        executor.add_node(n)
    commanded: list[tuple[float, np.ndarray]] = []
    client.create_subscription(
        JointState, topics.COMMANDED,
        lambda m: commanded.append((conversions.to_sec(m.header.stamp), np.array(m.position))),
        10)
    trajectories: list[JointTrajectory] = []
    jtc = next((c for c in spec.controllers if c.type == "joint_trajectory"), None)
    if jtc is not None:
        client.create_subscription(JointTrajectory, jtc.topic, trajectories.append,
                                   topics.COMMAND_QOS)
    chunk_pub = client.create_publisher(ActionChunk, topics.CHUNK_JOINT, topics.CHUNK_QOS)
    estop_pub = client.create_publisher(Bool, topics.ESTOP, topics.ESTOP_QOS)
    enable = client.create_client(Trigger, topics.ENABLE_SERVICE)
    try:
        assert spin_until(executor, lambda: len(commanded) > 5
                          and chunk_pub.get_subscription_count() > 0, 10.0)
        home = spec.home_vector()
        lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
        # aim well past the upper limit on some joints: commands must clamp, never exceed
        target = np.clip(home + 0.6, lower - 0.5, upper + 0.5)
        ramp = np.linspace(0.0, 1.0, 30)[:, None]
        now = client.get_clock().now().nanoseconds * 1e-9
        chunk = Chunk(stamp=now, actions=(home + ramp * (target - home)).astype(np.float32),
                      dt=spec.action_dt, space=ActionSpace.JOINT_ABSOLUTE,
                      names=spec.action_layout, chunk_id=1)
        chunk_pub.publish(conversions.chunk_to_msg(chunk))
        start = len(commanded)
        spin_until(executor, lambda: False, 1.2)  # the chunk's second of motion, then on
        assert spin_until(executor, lambda: len(commanded) > start + 30, 10.0)  # (a slow host)
        moving = commanded[start:]
        q = np.array([c[1] for c in moving])
        assert np.all(q >= lower - 1e-9) and np.all(q <= upper + 1e-9)
        step_limit = spec.limits_array("velocity") / spec.control_rate_hz
        assert np.all(np.abs(np.diff(q, axis=0)) <= step_limit * 1.05 + 1e-9)
        assert np.abs(q[-1] - home).max() > 0.2  # really moved
        # the fake robot followed the controllers it was sent
        assert np.abs(fake.joints.q - home).max() > 0.2
        assert sum(c.accepted for c in fake.joints.controllers.values()) > 30
        assert fake.rejected == 0
        # the command the robot's trajectory lead ahead, then the plan's next commands one
        # control period apart (a late tick leaves the arm on the plan); positions only by
        # default, as demonstrations are recorded; all within the position limits
        assert trajectories or jtc is None
        idx = [spec.action_layout.index(j) for j in jtc.joints] if jtc else []
        previews = 0
        for msg in trajectories[5:]:
            times = [conversions.to_sec(p.time_from_start) for p in msg.points]
            expected = spec.trajectory_lead_s + np.arange(len(times)) / spec.control_rate_hz
            np.testing.assert_allclose(times, expected, atol=1e-9)
            assert len(times) <= 1 + round(0.1 * spec.control_rate_hz)
            previews += len(times) > 1
            for point in msg.points:
                assert len(point.velocities) == (len(idx) if velocities else 0)
                assert np.all(np.array(point.positions) >= lower[idx] - 1e-9)
                assert np.all(np.array(point.positions) <= upper[idx] + 1e-9)
            if velocities and len(msg.points) > 1:  # the steps between the points
                q = np.array([p.positions for p in msg.points])
                v = np.array([p.velocities for p in msg.points[1:]])
                np.testing.assert_allclose(v, np.diff(q, axis=0) * spec.control_rate_hz,
                                           atol=1e-9)
        assert previews > 10 or jtc is None

        estop_pub.publish(Bool(data=True))
        assert spin_until(executor, lambda: smoother.pipeline.state is PipelineState.STOPPED,
                          5.0)
        # a new chunk is refused while stopped, and commands stay put
        chunk_pub.publish(conversions.chunk_to_msg(Chunk(
            stamp=client.get_clock().now().nanoseconds * 1e-9, actions=chunk.actions,
            dt=chunk.dt, names=spec.action_layout, chunk_id=2)))
        n = len(commanded)
        spin_until(executor, lambda: False, 0.5)  # the chunk arrives in this half second
        assert spin_until(executor, lambda: len(commanded) > n + 5, 10.0)
        held = np.array([c[1] for c in commanded[n:]])
        assert np.ptp(held, axis=0).max() < 1e-9
        assert smoother.pipeline.monitor.counters().get("chunk_stopped", 0) >= 1

        def call_enable() -> Trigger.Response:
            future = enable.call_async(Trigger.Request())
            assert spin_until(executor, future.done, 5.0)
            return future.result()

        assert enable.wait_for_service(timeout_sec=5.0)
        # refused while the e-stop input still says true, with the reason
        response = call_enable()
        assert not response.success and "asserted" in response.message
        estop_pub.publish(Bool(data=False))
        assert spin_until(executor, lambda: not smoother.estop_asserted, 5.0)
        assert call_enable().success
        assert smoother.pipeline.state is not PipelineState.STOPPED or spin_until(
            executor, lambda: smoother.pipeline.state is not PipelineState.STOPPED, 1.0)
    finally:
        executor.shutdown()
        for n in (smoother, fake, client):
            n.destroy_node()


def test_splice_report_follows_the_plans_first_command(rclpy_context):
    """The chunk-applied report (stamped with the splice) goes out right after the new plan's
    first command: a policy that starts work on it (sai's next speculation) cannot delay that
    command. No report without a command."""
    spec = RobotSpec.load("cobot_magic")
    smoother = SmootherNode(context=rclpy_context,
                            parameter_overrides=[Parameter("robot", value=spec.name)])
    sent: list[tuple[str, object]] = []

    class Recorder:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def publish(self, msg: object) -> None:
            sent.append((self.kind, msg))

    try:
        smoother.timer.cancel()  # ticks only when the test says
        smoother.applied_pub, smoother.commanded_pub = Recorder("applied"), Recorder("command")
        smoother.started_pub = Recorder("started")
        smoother.pipeline.offer_observation(smoother.get_clock().now().nanoseconds * 1e-9,
                                            spec.home_vector())
        assert smoother.tick()
        time.sleep(smoother.period)  # the next command may go out at once
        now = smoother.get_clock().now().nanoseconds * 1e-9
        chunk = Chunk(stamp=now, actions=np.tile(spec.home_vector(), (10, 1)).astype(np.float32),
                      dt=spec.action_dt, space=ActionSpace.JOINT_ABSOLUTE,
                      names=spec.action_layout, chunk_id=1)
        smoother.accept_chunk(chunk)  # spliced, and its first command right away
        kinds = [k for k, _ in sent]
        assert kinds == ["command", "command", "started", "applied"], kinds
        first, started, report = sent[1][1], sent[2][1], sent[3][1]
        assert conversions.to_sec(started.time_ref) == pytest.approx(now, abs=2e-6)
        assert started.header.stamp == first.header.stamp  # names exactly that command
        assert conversions.to_sec(report.time_ref) == pytest.approx(now, abs=2e-6)
        assert conversions.to_sec(report.header.stamp) <= conversions.to_sec(first.header.stamp)
        time.sleep(smoother.period)
        assert smoother.tick() and [k for k, _ in sent[4:]] == ["command"]  # no second report
    finally:
        smoother.destroy_node()


def test_estop_heard_from_every_publisher_qos_and_latched_for_a_late_smoother(rclpy_context):
    """Other teams' e-stop publishers: default QoS (reliable, volatile, depth 10), best effort,
    and our transient-local one, which a smoother started after the stop still hears. Each
    latches the stop; /wam/enable is refused while the input says true, accepted once released."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    spec = RobotSpec.load("cobot_magic")
    params = [Parameter("robot", value=spec.name)]
    client = rclpy.create_node("estop_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(client)
    fake = FakeRobotNode(context=rclpy_context,
                         parameter_overrides=[*params, Parameter("camera_scale", value=0.05)])
    executor.add_node(fake)
    latched = client.create_publisher(Bool, topics.ESTOP, topics.ESTOP_QOS)
    latched.publish(Bool(data=True))  # before any smoother exists
    spin_until(executor, lambda: False, 0.2)
    smoother = SmootherNode(context=rclpy_context, parameter_overrides=params)
    executor.add_node(smoother)
    enable = client.create_client(Trigger, topics.ENABLE_SERVICE)

    def call_enable() -> Trigger.Response:
        future = enable.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 5.0)
        return future.result()

    publishers = {
        "default": client.create_publisher(Bool, topics.ESTOP, 10),
        "best_effort": client.create_publisher(Bool, topics.ESTOP, QoSProfile(
            depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)),
    }
    try:
        assert spin_until(executor, lambda: smoother.pipeline.state is PipelineState.STOPPED,
                          10.0), "the late smoother missed the latched e-stop"
        assert enable.wait_for_service(timeout_sec=5.0)
        assert not call_enable().success
        latched.publish(Bool(data=False))
        assert spin_until(executor, lambda: not smoother.estop_asserted, 5.0)
        assert call_enable().success
        for name, pub in publishers.items():
            assert spin_until(executor, lambda p=pub: p.get_subscription_count() > 0, 10.0)
            assert smoother.pipeline.monitor.latched is None
            pub.publish(Bool(data=True))
            assert spin_until(executor, lambda: smoother.pipeline.monitor.latched is not None,
                              5.0), f"e-stop from a {name} publisher ignored"
            status = smoother.diag.statuses()[0]
            assert status.level == 2 and "e-stop latched since" in status.message
            assert "call /wam/enable" in status.message
            response = call_enable()
            assert not response.success and "asserted" in response.message, name
            pub.publish(Bool(data=False))
            assert spin_until(executor, lambda: not smoother.estop_asserted, 5.0)
            assert call_enable().success, name
    finally:
        executor.shutdown()
        for n in (smoother, fake, client):
            n.destroy_node()


def test_a_clock_jumping_back_does_not_wedge_the_smoother(rclpy_context):
    """use_sim_time and a /clock that jumps back 50 s (simulator reset, bag loop): the
    smoother keeps commanding on the new clock, within the limits, and takes the next chunk
    stamped on it (before, every command was held back until the old time came again)."""
    from rosgraph_msgs.msg import Clock

    spec = RobotSpec.load("cobot_magic")
    smoother = SmootherNode(context=rclpy_context, parameter_overrides=[
        Parameter("robot", value=spec.name), Parameter("use_sim_time", value=True)])
    client = rclpy.create_node("sim_clock", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    for n in (smoother, client):
        executor.add_node(n)
    clock = client.create_publisher(Clock, topics.CLOCK, 10)
    joints = client.create_publisher(JointState, spec.joint_state_topic, topics.SENSOR_QOS)
    chunks = client.create_publisher(ActionChunk, topics.CHUNK_JOINT, topics.CHUNK_QOS)
    commanded: list[tuple[float, np.ndarray]] = []
    client.create_subscription(JointState, topics.COMMANDED, lambda m: commanded.append(
        (conversions.to_sec(m.header.stamp), np.array(m.position))), 100)
    state = {"t": 100.0, "q": spec.home_vector()}

    def run(seconds: float) -> None:
        """Sim time advances in 5 ms steps; the arm follows its commands exactly."""
        end = state["t"] + seconds
        while state["t"] < end:
            state["t"] += 0.005
            clock.publish(Clock(clock=conversions.to_time(state["t"])))
            if commanded:
                state["q"] = commanded[-1][1]
            joints.publish(conversions.make_joint_state(spec.action_layout, state["q"],
                                                        state["t"]))
            for _ in range(3):
                executor.spin_once(timeout_sec=0.001)

    def sweep(chunk_id: int) -> ActionChunk:
        t = np.arange(60)[:, None] * spec.action_dt
        actions = spec.home_vector() + 0.3 * np.sin(2.0 * t) * ~spec.gripper_mask()
        return conversions.chunk_to_msg(Chunk(stamp=state["t"], actions=actions.astype(
            np.float32), dt=spec.action_dt, names=spec.action_layout, chunk_id=chunk_id))

    try:
        assert spin_until(executor, lambda: chunks.get_subscription_count() > 0, 10.0)
        run(0.5)
        assert commanded, "no command on sim time"
        chunks.publish(sweep(1))
        run(1.0)
        moved = np.abs(commanded[-1][1] - spec.home_vector()).max()
        assert moved > 0.05 and smoother.pipeline.timeline.last_stamp is not None
        state["t"] -= 50.0  # the clock jumps back
        n = len(commanded)
        run(1.0)
        after = [c for c in commanded[n:] if c[0] < 60.0]
        assert len(after) > 10, "commands stopped after the clock jumped back"
        chunks.publish(sweep(2))
        run(1.0)
        assert smoother.pipeline.timeline.last_stamp < 60.0  # the new clock's chunk is in
        assert smoother.clock_jump.jumps == 1
        q = np.array([c[1] for c in commanded])
        lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
        assert np.all(q >= lower - 1e-9) and np.all(q <= upper + 1e-9)
        step = np.abs(np.diff(q, axis=0)).max(axis=0)
        assert np.all(step <= spec.limits_array("velocity") / spec.control_rate_hz * 1.05
                      + 1e-9)
    finally:
        executor.shutdown()
        for n in (smoother, client):
            n.destroy_node()


def test_a_refused_joint_state_blocks_reenabling_across_control_ticks(rclpy_context):
    """E-stop, then the encoders read 100 rad once and go quiet. The control ticks that follow
    must not revive the last good reading: /wam/enable is refused (out_of_limits) until a
    valid joint state arrives. (The CI caught this: every tick handed the pipeline the last
    valid reading again, which cleared the refusal, so re-enabling depended on whether a tick
    fell between the bad reading and the call.)"""
    spec = RobotSpec.load("cobot_magic")
    smoother = SmootherNode(context=rclpy_context,
                            parameter_overrides=[Parameter("robot", value=spec.name)])
    client = rclpy.create_node("implausible_joints", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    for n in (smoother, client):
        executor.add_node(n)
    joints = client.create_publisher(JointState, spec.joint_state_topic, topics.SENSOR_QOS)
    estop = client.create_publisher(Bool, topics.ESTOP, topics.ESTOP_QOS)
    enable = client.create_client(Trigger, topics.ENABLE_SERVICE)
    home = spec.home_vector()

    def publish(q: np.ndarray) -> None:
        joints.publish(conversions.make_joint_state(
            spec.action_layout, q, client.get_clock().now().nanoseconds * 1e-9))

    def call_enable() -> Trigger.Response:
        future = enable.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 5.0)
        return future.result()

    def ticks(n: int) -> None:
        """n control periods with the arm at home (before the bad reading) or silent."""
        spin_until(executor, lambda: False, n / spec.control_rate_hz)

    try:
        assert spin_until(executor, lambda: joints.get_subscription_count() > 0, 10.0)
        assert enable.wait_for_service(timeout_sec=5.0)
        for _ in range(20):
            publish(home)
            ticks(1)
        assert smoother.pipeline.enforcer.initialised
        estop.publish(Bool(data=True))
        assert spin_until(executor, lambda: smoother.pipeline.state is PipelineState.STOPPED,
                          5.0)
        estop.publish(Bool(data=False))
        assert spin_until(executor, lambda: not smoother.estop_asserted, 5.0)
        publish(home + 100.0)
        assert spin_until(executor, lambda: smoother.pipeline.monitor.counters().get(
            "measurement_out_of_limits", 0) == 1, 5.0)
        ticks(10)  # ten control ticks, no joint state meanwhile (well within the watchdog)
        response = call_enable()
        assert not response.success and "out_of_limits" in response.message, response.message
        assert smoother.pipeline.monitor.latched is not None
        # a valid reading again: accepted
        publish(home)
        ticks(3)
        publish(home)
        assert spin_until(executor, lambda: call_enable().success, 5.0)
    finally:
        executor.shutdown()
        for n in (smoother, client):
            n.destroy_node()
