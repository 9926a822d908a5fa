"""The MuJoCo sim node as its own process over DDS: /clock advances, camera images and joint
states arrive, a command on a controller topic moves the joint, the reset service starts a new
episode."""

from __future__ import annotations

import json

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.testing.process import NodeProcess, python_module_cmd, spin_until  # noqa: E402


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_sim_node_publishes_and_follows_commands(rclpy_context, tmp_path, monkeypatch, robot):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    spec = RobotSpec.load(robot)
    proc = NodeProcess(python_module_cmd(
        "wam_ros.nodes.sim_node", "--ros-args", "-p", f"robot:={robot}", "-p", "seed:=7",
        "-p", "camera_width:=64", "-p", "camera_height:=48"), log_path=str(tmp_path / "sim.log"))
    node = rclpy.create_node("sim_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    clock: list[float] = []
    images: dict[str, Image] = {}
    frame_stamps: list[float] = []
    joints: list[JointState] = []
    status: list[dict] = []
    node.create_subscription(Clock, topics.CLOCK,
                             lambda m: clock.append(conversions.to_sec(m.clock)),
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    for cam in spec.cameras:
        node.create_subscription(Image, cam.topic,
                                 lambda m, n=cam.name: (images.__setitem__(n, m),
                                                        frame_stamps.append(
                                                            conversions.to_sec(m.header.stamp))),
                                 topics.SENSOR_QOS)
    node.create_subscription(JointState, spec.joint_state_topic, joints.append,
                             topics.SENSOR_QOS)
    node.create_subscription(String, topics.SIM_STATUS,
                             lambda m: status.append(json.loads(m.data)), 10)
    arm = spec.controllers[0]  # the left arm's controller
    msg_type = JointTrajectory if arm.type == "joint_trajectory" else Float64MultiArray
    cmd_pub = node.create_publisher(msg_type, arm.topic, topics.COMMAND_QOS)
    reset = node.create_client(Trigger, topics.SIM_RESET)
    try:
        assert spin_until(executor, lambda: len(clock) > 10 and len(images) == len(
            spec.cameras) and joints and status, 60.0), proc.output()
        for cam in spec.cameras:
            img = images[cam.name]
            assert (img.width, img.height, img.encoding) == (64, 48, "rgb8")
            assert np.frombuffer(img.data, np.uint8).std() > 5.0
        assert status[-1]["task"] == "pick_place" and status[-1]["seed"] == 7
        start = clock[-1]
        assert spin_until(executor, lambda: clock[-1] > start + 0.5, 30.0), proc.output()
        # frames are taken on joint-state ticks: each has a joint state of its instant.
        # Only frames inside the span of received joint states count: the two subscriptions
        # are matched at different moments, and best-effort messages may be dropped.
        joint_times = [conversions.to_sec(j.header.stamp) for j in joints]
        joint_stamps = {round(t, 6) for t in joint_times}
        inside = [t for t in frame_stamps if min(joint_times) <= t <= max(joint_times)]
        matched = [round(t, 6) in joint_stamps for t in inside]
        assert len(matched) >= 5 and sum(matched) >= 0.9 * len(matched), \
            (len(frame_stamps), len(matched), sum(matched))

        # move the left arm's first joint by 0.3 rad
        home = np.array([spec.home[j] for j in arm.joints])
        goal = home.copy()
        goal[0] += 0.3
        assert spin_until(executor, lambda: cmd_pub.get_subscription_count() > 0, 10.0)
        if msg_type is JointTrajectory:
            cmd = JointTrajectory(joint_names=list(arm.joints), points=[JointTrajectoryPoint(
                positions=goal.tolist(), time_from_start=conversions.to_duration(0.5))])
        else:
            cmd = Float64MultiArray(data=goal.tolist())
        cmd_pub.publish(cmd)
        joint = arm.joints[0]

        def position() -> float:
            return float(conversions.joint_positions(joints[-1], [joint])[0])

        assert spin_until(executor, lambda: abs(position() - goal[0]) < 0.01, 30.0), \
            (position(), proc.output())
        names = list(joints[-1].name)
        assert names[:spec.action_dim] == list(spec.action_layout)
        assert set(spec.fixed_joints) <= set(names)

        # a new episode: the next seed, elapsed back near zero, the arm at home again
        assert reset.wait_for_service(timeout_sec=10.0)
        future = reset.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 20.0)
        assert future.result().success, future.result().message
        assert spin_until(executor, lambda: status[-1]["episode"] == 1, 10.0)
        assert status[-1]["seed"] == 8 and status[-1]["elapsed"] < 1.0
        assert spin_until(executor, lambda: abs(position() - home[0]) < 0.01, 10.0)
        assert proc.alive(), proc.output()
    finally:
        node.destroy_node()
        assert proc.stop() == 0, proc.output()
