"""The managed nodes through every transition, as `ros2 lifecycle set` drives them
(lifecycle_msgs/ChangeState): unconfigured nodes do nothing; configure loads the model and
announces its input; activate plans and commands; a deactivated smoother sends nothing (the
arm is left to teleop) and, activated again, starts at the measured pose; a deactivated policy
plans nothing; cleanup releases the model and configure loads it again; shutdown finalizes."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.common import PoolExecutor  # noqa: E402
from wam_ros.nodes.decoder_node import DecoderNode  # noqa: E402
from wam_ros.nodes.fake_robot import FakeRobotNode  # noqa: E402
from wam_ros.nodes.observation_node import ObservationNode  # noqa: E402
from wam_ros.nodes.policy_node import PolicyNode  # noqa: E402
from wam_ros.nodes.smoother_node import SmootherNode  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402


def test_every_transition_of_the_policy_and_the_smoother(rclpy_context, tiny_checkpoint):
    spec = RobotSpec.load("cobot_magic")
    ckpt = str(tiny_checkpoint("cobot_magic"))
    robot = Parameter("robot", value=spec.name)
    manual = Parameter("autostart", value=False)
    fake = FakeRobotNode(context=rclpy_context,
                         parameter_overrides=[robot, Parameter("camera_scale", value=0.1)])
    observation = ObservationNode(context=rclpy_context, parameter_overrides=[robot])
    policy = PolicyNode(context=rclpy_context, parameter_overrides=[
        robot, manual, Parameter("checkpoint", value=ckpt)])
    decoder = DecoderNode(context=rclpy_context, parameter_overrides=[
        robot, Parameter("checkpoint", value=ckpt)])
    smoother = SmootherNode(context=rclpy_context, parameter_overrides=[robot, manual])
    client = rclpy.create_node("lifecycle_client", context=rclpy_context)
    nodes = (fake, observation, policy, decoder, smoother, client)
    executor = PoolExecutor(num_threads=4, context=rclpy_context)
    for n in nodes:
        executor.add_node(n)
    chunks: list[float] = []
    commanded: list[tuple[float, np.ndarray]] = []
    client.create_subscription(ActionChunk, topics.CHUNK_RAW,
                               lambda m: chunks.append(conversions.to_sec(m.header.stamp)),
                               topics.CHUNK_QOS)
    client.create_subscription(JointState, topics.COMMANDED, lambda m: commanded.append(
        (conversions.to_sec(m.header.stamp), np.array(m.position))), 100)
    change = {n: client.create_client(ChangeState, f"/{n}/change_state")
              for n in ("wam_policy", "wam_smoother")}
    get = {n: client.create_client(GetState, f"/{n}/get_state") for n in change}

    def transition(node: str, tid: int) -> bool:
        assert change[node].wait_for_service(timeout_sec=10.0)
        future = change[node].call_async(ChangeState.Request(transition=Transition(id=tid)))
        assert spin_until(executor, future.done, 120.0)
        return future.result().success

    def state(node: str) -> int:
        future = get[node].call_async(GetState.Request())
        assert spin_until(executor, future.done, 10.0)
        return future.result().current_state.id

    def flowing(stream: list, seconds: float = 1.0) -> bool:
        n = len(stream)
        spin_until(executor, lambda: False, seconds)
        return len(stream) > n

    try:
        assert spin_until(executor, lambda: get["wam_policy"].service_is_ready()
                          and get["wam_smoother"].service_is_ready(), 10.0)
        assert state("wam_policy") == State.PRIMARY_STATE_UNCONFIGURED
        assert state("wam_smoother") == State.PRIMARY_STATE_UNCONFIGURED
        assert policy.runner is None and not flowing(chunks) and not commanded

        assert transition("wam_policy", Transition.TRANSITION_CONFIGURE)
        assert transition("wam_smoother", Transition.TRANSITION_CONFIGURE)
        assert state("wam_policy") == State.PRIMARY_STATE_INACTIVE
        assert policy.runner is not None  # the model is loaded and warm
        assert spin_until(executor, lambda: observation.contract == policy.contract, 5.0)
        assert not flowing(chunks) and not commanded  # inactive: nothing planned or sent

        assert transition("wam_smoother", Transition.TRANSITION_ACTIVATE)
        assert transition("wam_policy", Transition.TRANSITION_ACTIVATE)
        assert state("wam_policy") == State.PRIMARY_STATE_ACTIVE
        assert spin_until(executor, lambda: len(chunks) >= 3 and len(commanded) > 20, 60.0)

        assert transition("wam_smoother", Transition.TRANSITION_DEACTIVATE)
        spin_until(executor, lambda: False, 0.3)
        assert not flowing(commanded)  # the arm is left to other controllers
        assert transition("wam_smoother", Transition.TRANSITION_ACTIVATE)
        n = len(commanded)
        measured = fake.joints.q.copy()
        assert spin_until(executor, lambda: len(commanded) > n + 10, 10.0)
        first = commanded[n][1]
        np.testing.assert_allclose(first, measured, atol=0.02)  # starts where the arm is
        q = np.array([c for _, c in commanded[n:]])
        t = np.array([s for s, _ in commanded[n:]])
        bound = spec.limits_array("velocity") * np.diff(t)[:, None] * 1.05 + 1e-9
        assert np.all(np.abs(np.diff(q, axis=0)) <= bound)

        assert transition("wam_policy", Transition.TRANSITION_DEACTIVATE)
        spin_until(executor, lambda: False, 0.5)
        assert not flowing(chunks)
        assert transition("wam_policy", Transition.TRANSITION_CLEANUP)
        assert state("wam_policy") == State.PRIMARY_STATE_UNCONFIGURED
        assert policy.runner is None and policy.policy is None
        assert transition("wam_policy", Transition.TRANSITION_CONFIGURE)
        assert transition("wam_policy", Transition.TRANSITION_ACTIVATE)
        assert spin_until(executor, lambda: flowing(chunks, 0.2), 30.0)

        for name in ("wam_policy", "wam_smoother"):
            assert transition(name, Transition.TRANSITION_ACTIVE_SHUTDOWN)
            assert state(name) == State.PRIMARY_STATE_FINALIZED
        assert not flowing(chunks) and not flowing(commanded)
    finally:
        executor.shutdown()
        for n in nodes:
            close = getattr(n, "close", None)
            if close is not None:
                close()
            n.destroy_node()
