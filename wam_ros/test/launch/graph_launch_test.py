"""launch_testing test of an installed wam_ros launch file against the kinematic fake robot
(or the simulator, for sim.launch.py). Run by test_launch_real.py as

    python -m launch_testing.launch_test graph_launch_test.py launch_file:=cobot_magic.launch.py \
        robot:=cobot_magic

with the environment of a colcon install of the repository. Active test: chunks flow, every
controller receives commands within the limits, every node publishes /diagnostics, and after an
e-stop the commands hold still. After shutdown (Ctrl-C's SIGINT): every process exited with 0.
"""

from __future__ import annotations

import os
import sys
import time
import unittest

import launch_testing
import launch_testing.asserts
import numpy as np
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def _robot_side(context):
    if LaunchConfiguration("launch_file").perform(context) == "sim.launch.py":
        return []  # the simulator is part of that launch
    robot = LaunchConfiguration("robot").perform(context)
    return [ExecuteProcess(cmd=[sys.executable, "-m", "wam_ros.nodes.fake_robot", "--ros-args",
                                "-p", f"robot:={robot}", "-p", "camera_scale:=0.25"],
                           name="fake_robot", output="screen")]


def generate_test_description():
    share = get_package_share_directory("wam_ros")
    launch_file = LaunchConfiguration("launch_file")

    def include(context):
        path = os.path.join(share, "launch", launch_file.perform(context))
        return [IncludeLaunchDescription(PythonLaunchDescriptionSource(path))]

    return LaunchDescription([
        DeclareLaunchArgument("launch_file"),
        DeclareLaunchArgument("robot"),
        OpaqueFunction(function=include),
        OpaqueFunction(function=_robot_side),
        launch_testing.actions.ReadyToTest(),
    ])


class TestGraphDrivesTheRobot(unittest.TestCase):
    def test_chunks_commands_diagnostics_and_estop(self, proc_output):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Bool, Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from wam_ros.core.robot import RobotSpec
        from wam_ros.nodes import topics
        from wam_ros_msgs.msg import ActionChunk

        robot = next(a.split(":=", 1)[1] for a in sys.argv if a.startswith("robot:="))
        spec = RobotSpec.load(robot)
        rclpy.init()
        node = rclpy.create_node("launch_probe")
        chunks, diagnostics = [], {}
        commands: dict[str, list[tuple[float, np.ndarray]]] = {c.name: [] for c in
                                                                spec.controllers}
        node.create_subscription(ActionChunk, topics.CHUNK_JOINT, chunks.append,
                                 topics.CHUNK_QOS)

        def on_diagnostics(msg):
            for s in msg.status:
                diagnostics[s.name] = (s.level[0], s.message)

        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diagnostics, 50)
        for c in spec.controllers:
            def record(m, name=c.name):
                q = (m.points[0].positions if hasattr(m, "points") else m.data)
                commands[name].append((time.monotonic(), np.array(q)))
            kind = JointTrajectory if c.type == "joint_trajectory" else Float64MultiArray
            node.create_subscription(kind, c.topic, record, 50)
        estop = node.create_publisher(Bool, topics.ESTOP, 10)  # another team's default QoS

        def spin_until(condition, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not condition():
                rclpy.spin_once(node, timeout_sec=0.05)
            return condition()

        try:
            self.assertTrue(spin_until(lambda: len(chunks) >= 3, 150.0), "no chunks")
            self.assertTrue(spin_until(lambda: all(len(v) > 10 for v in commands.values()),
                                       30.0), {k: len(v) for k, v in commands.items()})
            for c in spec.controllers:
                lo = np.array([spec.joints[j].lower for j in c.joints])
                hi = np.array([spec.joints[j].upper for j in c.joints])
                q = np.array([v for _, v in commands[c.name]])
                self.assertTrue(np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9), c.name)
            wanted = {f"wam_ros/{n}" for n in ("observation", "policy", "decoder", "smoother")}
            self.assertTrue(spin_until(lambda: wanted <= set(diagnostics), 10.0),
                            sorted(diagnostics))
            self.assertTrue(spin_until(lambda: estop.get_subscription_count() > 0, 10.0))
            estop.publish(Bool(data=True))
            self.assertTrue(spin_until(lambda: diagnostics.get("wam_ros/smoother", (0, ""))[1]
                                       .startswith("e-stop latched"), 10.0), diagnostics)
            spin_until(lambda: False, 1.0)  # decelerated to a hold
            since = time.monotonic()
            spin_until(lambda: False, 1.0)
            for name, values in commands.items():
                held = [q for t, q in values if t > since]
                self.assertTrue(held, name)
                self.assertLess(float(np.ptp(np.array(held), axis=0).max()), 1e-9, name)
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_every_process_exits_with_0(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
