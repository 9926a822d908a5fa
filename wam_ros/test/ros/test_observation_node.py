"""Observation node in-process: cameras + joint states in, synchronised Observation out."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from wam_ros.core.config import ConfigError  # noqa: E402
from wam_ros.core.robot import RobotSpec  # noqa: E402
from wam_ros.nodes import conversions, topics  # noqa: E402
from wam_ros.nodes.observation_node import ObservationNode  # noqa: E402
from wam_ros.testing.process import spin_until  # noqa: E402
from wam_ros_msgs.msg import Observation as ObservationMsg  # noqa: E402


def _rig(context, node, driver, spec, msg_type=Image, suffix="", qos=topics.SENSOR_QOS):
    """The node and a driver node on one executor: the driver publishes the robot's cameras
    (`msg_type` on topic + `suffix`) and joint states, and collects the observations."""
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(driver)
    got: list[ObservationMsg] = []
    driver.create_subscription(ObservationMsg, topics.OBSERVATION, got.append,
                               topics.OBSERVATION_QOS)
    cams = {c.name: driver.create_publisher(msg_type, c.topic + suffix, qos)
            for c in spec.cameras}
    joints = driver.create_publisher(JointState, spec.joint_state_topic, qos)
    return executor, got, cams, joints


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_cameras_and_joints_become_observations(rclpy_context, robot):
    spec = RobotSpec.load(robot)
    node = ObservationNode(context=rclpy_context, parameter_overrides=[
        Parameter("robot", value=robot), Parameter("image_width", value=96),
        Parameter("image_height", value=64)])
    fake = rclpy.create_node("fake_robot", context=rclpy_context)
    executor, got, cams, joints = _rig(rclpy_context, node, fake, spec)
    assert spin_until(executor, lambda: all(p.get_subscription_count() for p in cams.values())
                      and joints.get_subscription_count() > 0, 10.0)
    try:
        home = spec.home_vector()
        # joint readings that change per set, inside the limits (some joints rest on one)
        inward = np.sign((spec.limits_array("lower") + spec.limits_array("upper")) / 2 - home)
        for k in range(5):
            spin_until(executor, lambda: False, 0.1)  # frames 100 ms apart, like a 10 Hz rig
            now = fake.get_clock().now().nanoseconds * 1e-9
            joints.publish(conversions.make_joint_state(spec.action_layout,
                                                        home + 0.001 * k * inward, now))
            for i, (name, pub) in enumerate(cams.items()):
                frame = np.full((480, 640, 3), 10 * i + k, np.uint8)
                pub.publish(conversions.rgb_to_image(frame, now + 0.001 * i, name))
            # a broken frame from one camera: refused, counted, nothing else disturbed
            bad = conversions.rgb_to_image(np.zeros((480, 640, 3), np.uint8), now)
            bad.encoding = "16UC1"
            cams[spec.camera_names[0]].publish(bad)
            spin_until(executor, lambda n=k: len(got) > n, 2.0)
        assert len(got) >= 4, node.sync.dropped
        last = conversions.msg_to_observation(got[-1], spec.action_layout)
        assert list(last.images) == list(spec.camera_names)
        for i, im in enumerate(last.images.values()):
            assert im.shape == (64, 96, 3)
            k = int(im[0, 0, 0]) - 10 * i
            assert 0 <= k < 5
        np.testing.assert_allclose(last.joint_positions, home + 0.001 * k * inward)
        assert [m.sequence for m in got] == list(range(len(got)))
        # when the last frame of each set reached the node: after its newest stamp (this
        # rig stamps its frames up to 2 ms ahead of its clock), within the test's 2 s
        for m in got:
            lag = conversions.to_sec(m.received) - conversions.to_sec(m.header.stamp)
            assert -0.002 <= lag < 2.0, lag
        assert node.diag.refusals[f"{spec.camera_names[0]}.bad_image"] >= 1
    finally:
        executor.shutdown()
        node.destroy_node()
        fake.destroy_node()


def test_bad_parameter_fails_at_start_with_a_clear_message(rclpy_context):
    with pytest.raises(ConfigError, match="resize_mode: got 'zoom'; allowed: resize, center_crop"):
        ObservationNode(context=rclpy_context,
                        parameter_overrides=[Parameter("resize_mode", value="zoom")])


def test_compressed_frames_that_cannot_be_decoded_are_refused_never_fatal(rclpy_context,
                                                                         tmp_path):
    """A CompressedImage with empty data, garbage, or a small PNG that would decode to
    16000x16000: each is refused and counted for its camera (the size read from the header,
    before decoding); the node lives on and the next good frames make an observation."""
    import struct
    import zlib

    import cv2
    from sensor_msgs.msg import CompressedImage

    from wam_ros.paths import config_dir

    yaml_text = (config_dir() / "robots" / "cobot_magic.yaml").read_text()
    robot_yaml = tmp_path / "cobot_magic_jpeg.yaml"
    robot_yaml.write_text(yaml_text.replace("encoding: rgb8", "encoding: jpeg").replace(
        "urdf: urdf/", f"urdf: {config_dir().parent / 'urdf'}/"))
    spec = RobotSpec.load(str(robot_yaml))
    assert all(c.compressed for c in spec.cameras)
    node = ObservationNode(context=rclpy_context, parameter_overrides=[
        Parameter("robot", value=str(robot_yaml)), Parameter("image_width", value=32),
        Parameter("image_height", value=32)])
    probe = rclpy.create_node("camera_driver", context=rclpy_context)
    executor, got, cams, joints = _rig(rclpy_context, node, probe, spec, CompressedImage,
                                       "/compressed", 10)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16000, 16000, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 48001 * 16)) + chunk(b"IEND", b""))
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))
    try:
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in
                                                cams.values()), 10.0)
        first = spec.camera_names[0]
        for fmt, data in (("jpeg", b""), ("jpeg", b"\xff\xd8\xff" + b"\x00" * 64),
                          ("png", bomb), ("jpeg", jpeg.tobytes()[:50])):
            now = probe.get_clock().now().nanoseconds * 1e-9
            msg = CompressedImage(format=fmt, data=data)
            msg.header.stamp = conversions.to_time(now)
            cams[first].publish(msg)
        refused = lambda: sum(v for k, v in node.diag.refusals.items()  # noqa: E731
                              if k.startswith(f"{first}."))
        assert spin_until(executor, lambda: refused() >= 4, 5.0), node.diag.refusals
        assert node.diag.refusals[f"{first}.too_large"] == 1
        for _ in range(3):  # good frames again
            now = probe.get_clock().now().nanoseconds * 1e-9
            joints.publish(conversions.make_joint_state(spec.action_layout, spec.home_vector(),
                                                        now))
            for pub in cams.values():
                msg = CompressedImage(format="jpeg", data=jpeg.tobytes())
                msg.header.stamp = conversions.to_time(now)
                pub.publish(msg)
            spin_until(executor, lambda: False, 0.1)
        assert spin_until(executor, lambda: len(got) >= 1, 5.0)
        status = {s.name: s for s in node.diag.statuses()}
        assert status[f"wam_ros/observation/{first}"].level == 1  # recent refusals: WARN
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_the_policy_input_contract_sizes_the_observations(rclpy_context):
    """With the launch files' parameters (no image size) the node publishes nothing until the
    policy announces its input (latched, so announcing before the node starts works too), then
    the policy's cameras at the policy's size; a contract naming a camera the robot lacks is
    an ERROR, not a crash."""
    from std_msgs.msg import String

    from wam_ros.core.types import InputContract

    spec = RobotSpec.load("agibot_g1")
    probe = rclpy.create_node("policy_standin", context=rclpy_context)
    contract_pub = probe.create_publisher(String, topics.POLICY_INPUT, topics.CONTRACT_QOS)
    node = ObservationNode(context=rclpy_context,
                           parameter_overrides=[Parameter("robot", value=spec.name)])
    executor, got, cams, joints = _rig(rclpy_context, node, probe, spec)

    def publish_set() -> None:
        now = probe.get_clock().now().nanoseconds * 1e-9
        joints.publish(conversions.make_joint_state(spec.action_layout, spec.home_vector(),
                                                    now))
        for name, pub in cams.items():
            pub.publish(conversions.rgb_to_image(np.zeros((48, 64, 3), np.uint8), now, name))
        spin_until(executor, lambda: False, 0.05)

    try:
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in
                                                cams.values()), 10.0)
        for _ in range(5):
            publish_set()
        assert not got
        summary = node.diag.statuses()[0]
        assert summary.level == 1 and "input contract" in summary.message
        contract_pub.publish(String(data=InputContract(("nonexistent_cam",), 32, 32).to_json()))
        assert spin_until(executor, lambda: node.diag.statuses()[0].level == 2, 5.0)
        two = InputContract(spec.camera_names[:2], 40, 56)
        contract_pub.publish(String(data=two.to_json()))
        assert spin_until(executor, lambda: node.contract == two, 5.0)
        for _ in range(5):
            publish_set()
        assert spin_until(executor, lambda: len(got) >= 2, 5.0)
        obs = conversions.msg_to_observation(got[-1], spec.action_layout)
        assert list(obs.images) == list(spec.camera_names[:2])
        assert all(im.shape == (40, 56, 3) for im in obs.images.values())
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
