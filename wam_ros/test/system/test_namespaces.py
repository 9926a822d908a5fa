"""Two robots on one DDS domain: the graph launched twice, in namespaces robot1 and robot2
(launch argument namespace), each with its own fake robot in its namespace. Each graph drives
only its own robot, /diagnostics keeps them apart, and an e-stop of one stops only that one."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from wam_ros.bringup.graph import GraphArgs, NodeSpec, build_graph  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.testing.process import NodeProcess, spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402

pytestmark = pytest.mark.slow
ROBOTS = ("robot1", "robot2")


def test_two_namespaced_graphs_share_a_domain(rclpy_context, tmp_path, tiny_checkpoint):
    spec = RobotSpec.load("cobot_magic")
    ckpt = tiny_checkpoint("cobot_magic")
    procs: list[NodeProcess] = []
    for ns in ROBOTS:
        graph = build_graph(GraphArgs(checkpoint=str(ckpt), composed=True, namespace=ns))
        fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot",
                        {"robot": spec.name, "camera_scale": 0.25}, namespace=ns)
        procs += [NodeProcess(s.command(), log_path=str(tmp_path / f"{ns}_{s.name}.log"))
                  for s in (fake, *graph)]
    node = rclpy.create_node("namespace_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    chunks = {ns: [] for ns in ROBOTS}
    commanded = {ns: [] for ns in ROBOTS}
    levels: dict[str, int] = {}
    for ns in ROBOTS:
        node.create_subscription(ActionChunk, f"/{ns}/{topics.CHUNK_JOINT}", chunks[ns].append,
                                 topics.CHUNK_QOS)
        node.create_subscription(JointState, f"/{ns}/{topics.COMMANDED}", lambda m, ns=ns:
                                 commanded[ns].append((conversions.to_sec(m.header.stamp),
                                                       np.array(m.position))), 100)

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for s in msg.status:
            levels[s.name] = s.level[0]

    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diagnostics, 50)
    estop = node.create_publisher(Bool, f"/{ROBOTS[0]}/{topics.ESTOP}", topics.ESTOP_QOS)

    def logs() -> str:
        return "\n".join(f"--- {p.cmd}\n{p.output()}" for p in procs)

    try:
        assert spin_until(executor, lambda: all(len(c) >= 3 for c in chunks.values()), 120.0), \
            logs()
        # nothing of the graph is in the root namespace
        names = dict(node.get_topic_names_and_types())
        assert f"/{topics.CHUNK_JOINT}" not in names
        assert all(f"/{ns}{spec.cameras[0].topic}" in names for ns in ROBOTS)
        assert spin_until(executor, lambda: all(f"{ns}/wam_ros/smoother" in levels
                                                for ns in ROBOTS), 10.0), sorted(levels)
        estop.publish(Bool(data=True))
        assert spin_until(executor, lambda: levels.get("robot1/wam_ros/smoother") == 2, 10.0)
        spin_until(executor, lambda: False, 1.5)  # robot1 brakes to a hold
        since = max(t for t, _ in commanded["robot1"])
        n2 = len(chunks["robot2"])
        spin_until(executor, lambda: False, 1.5)
        held = np.array([q for t, q in commanded["robot1"] if t > since])
        assert len(held) > 10 and np.ptp(held, axis=0).max() < 1e-9  # robot1 stopped
        assert len(chunks["robot2"]) > n2  # robot2 carries on
        assert levels.get("robot2/wam_ros/smoother") != 2
        for ns in ROBOTS:
            q = np.array([c for _, c in commanded[ns]])
            assert np.all(q >= spec.limits_array("lower") - 1e-9)
            assert np.all(q <= spec.limits_array("upper") + 1e-9)
    finally:
        executor.shutdown()
        node.destroy_node()
        codes = [p.stop() for p in procs]
    assert all(c in (0, -2) for c in codes), (codes, logs())
