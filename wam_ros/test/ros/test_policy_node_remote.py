"""The policy node with backend `remote` (parameters only, as a launch file sets them): it
starts while its server is down (the arm holds, no chunk), and once `wam-ros serve`'s server
listens on the URL it reconnects and publishes the server's chunks."""

from __future__ import annotations

import socket

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from wam_ros.core.config import ConfigError  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.core.types import Observation  # noqa: E402
from wam_ros.model.checkpoint import read_checkpoint_config  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.common import PoolExecutor  # noqa: E402
from wam_ros.nodes.policy_node import PolicyNode  # noqa: E402
from wam_ros.runtime.serve import checkpoint_server  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402
from wam_ros_msgs.msg import Observation as ObservationMsg  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_policy_node_holds_while_the_server_is_down_then_follows_it(
        rclpy_context, tiny_checkpoint):
    spec = RobotSpec.load("cobot_magic")
    ckpt = tiny_checkpoint("cobot_magic")
    port = free_port()
    params = [Parameter("robot", value=spec.name), Parameter("backend", value="remote"),
              Parameter("server_url", value=f"ws://127.0.0.1:{port}"),
              Parameter("server_mapping", value="wam_ros"),
              Parameter("server_timeout_s", value=30.0), Parameter("scheduler", value="async")]
    policy = PolicyNode(context=rclpy_context, parameter_overrides=params)
    probe = rclpy.create_node("probe", context=rclpy_context)
    executor = PoolExecutor(num_threads=4, context=rclpy_context)
    for n in (policy, probe):
        executor.add_node(n)
    raw: list[ActionChunk] = []
    probe.create_subscription(ActionChunk, topics.CHUNK_RAW, raw.append, topics.CHUNK_QOS)
    obs_pub = probe.create_publisher(ObservationMsg, topics.OBSERVATION, topics.OBSERVATION_QOS)
    h, w = read_checkpoint_config(ckpt)[0].image_size
    rng = np.random.default_rng(0)

    def publish_observations(seconds: float, until=lambda: False) -> None:
        for _ in range(int(seconds * 20)):
            now = probe.get_clock().now().nanoseconds * 1e-9
            obs = Observation(now, {c: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                                    for c in spec.camera_names}, spec.home_vector())
            obs_pub.publish(conversions.observation_to_msg(obs, spec.action_layout))
            if spin_until(executor, until, 0.05):
                return

    try:
        assert spin_until(executor, lambda: obs_pub.get_subscription_count() > 0, 10.0)
        # down: inference fails, nothing is published (the smoother would hold the arm)
        publish_observations(1.0, until=lambda: policy.runner.refusals["inference_failed"] > 0)
        assert policy.runner.refusals["inference_failed"] > 0
        assert raw == []
        assert policy.policy.stats()["remote.unreachable"] >= 1
        server = checkpoint_server(str(ckpt), port=port, log=lambda _m: None)
        with server.in_thread():
            publish_observations(90.0, until=lambda: len(raw) >= 3)
        assert len(raw) >= 3
        chunk = conversions.msg_to_chunk(raw[0])
        assert raw[0].space == ActionChunk.SPACE_JOINT_ABSOLUTE
        assert chunk.names == spec.action_layout
        assert chunk.horizon == read_checkpoint_config(ckpt)[0].horizon
        assert np.all(np.isfinite(chunk.actions))
    finally:
        executor.shutdown()
        policy.close()
        for n in (policy, probe):
            n.destroy_node()


def test_remote_policy_node_refuses_sai_and_a_missing_url(rclpy_context):
    for extra, match in (([Parameter("scheduler", value="sai"),
                           Parameter("server_url", value="ws://127.0.0.1:1")],
                          "sai needs the model's internals"),
                         ([], "server_url: empty")):
        params = [Parameter("robot", value="cobot_magic"),
                  Parameter("backend", value="remote"), *extra]
        with pytest.raises(ConfigError, match=match):
            PolicyNode(context=rclpy_context, parameter_overrides=params)
