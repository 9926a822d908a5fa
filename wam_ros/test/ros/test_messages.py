"""ActionChunk and Observation cross between two processes over DDS; raw 640x480 images
stream without loss through our FastDDS profile."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import UInt32  # noqa: E402

from wam_ros.core.types import ActionSpace, Chunk, Observation  # noqa: E402
from wam_ros.nodes import conversions  # noqa: E402
from wam_ros.testing.process import NodeProcess, spin_until  # noqa: E402
from wam_ros_msgs.msg import ActionChunk  # noqa: E402
from wam_ros_msgs.msg import Observation as ObservationMsg  # noqa: E402

ECHO = str(Path(__file__).parents[1] / "echo_process.py")
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def echo_graph(rclpy_context, tmp_path):
    proc = NodeProcess([sys.executable, ECHO], log_path=str(tmp_path / "echo.log"))
    node = rclpy.create_node("wam_test_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        yield node, executor, proc
    finally:
        executor.shutdown()
        node.destroy_node()
        assert proc.stop() in (0, -2), proc.output()
        # FastDDS reports a profile it cannot parse and silently falls back to defaults
        assert "XMLPARSER" not in proc.output(), proc.output()


def _sample_chunk() -> Chunk:
    rng = np.random.default_rng(3)
    return Chunk(
        stamp=1234.5678, actions=rng.normal(size=(16, 14)).astype(np.float32), dt=1 / 30,
        space=ActionSpace.JOINT_DELTA, names=tuple(f"j{i}" for i in range(14)), chunk_id=42,
        episode_id=3, start_offset=0.1, reference=rng.normal(size=14), inference_time=0.031,
        blocking_time=0.012,
    )


def test_action_chunk_and_observation_round_trip(echo_graph):
    node, executor, proc = echo_graph
    got: dict[str, object] = {}
    chunk_pub = node.create_publisher(ActionChunk, "/test/chunk", RELIABLE)
    obs_pub = node.create_publisher(ObservationMsg, "/test/obs", RELIABLE)
    node.create_subscription(ActionChunk, "/test/chunk_echo", lambda m: got.update(chunk=m),
                             RELIABLE)
    node.create_subscription(ObservationMsg, "/test/obs_echo", lambda m: got.update(obs=m),
                             RELIABLE)
    assert spin_until(executor, lambda: chunk_pub.get_subscription_count() > 0
                      and obs_pub.get_subscription_count() > 0
                      and node.count_publishers("/test/obs_echo") > 0, 20.0), proc.output()

    chunk = _sample_chunk()
    rng = np.random.default_rng(5)
    names = [f"j{i}" for i in range(14)]
    obs = Observation(
        stamp=99.25,
        images={c: rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
                for c in ("cam_high", "cam_left_wrist", "cam_right_wrist")},
        joint_positions=rng.normal(size=14), sequence=17,
    )
    # Discovery is matched on our side; the echo's publishers may not have matched our
    # subscriptions yet (a reliable message sent before that is not delivered): resend until
    # both come back
    for _ in range(20):
        chunk_pub.publish(conversions.chunk_to_msg(chunk))
        obs_pub.publish(conversions.observation_to_msg(obs, names, dropped_frames=2))
        if spin_until(executor, lambda: "chunk" in got and "obs" in got, 1.0):
            break
    assert "chunk" in got and "obs" in got, proc.output()

    back = conversions.msg_to_chunk(got["chunk"])
    assert back.stamp == pytest.approx(chunk.stamp, abs=1e-9)
    assert back.space is ActionSpace.JOINT_DELTA
    assert back.names == chunk.names and back.chunk_id == 42 and back.episode_id == 3
    assert back.dt == pytest.approx(chunk.dt) and back.start_offset == pytest.approx(0.1)
    np.testing.assert_array_equal(back.actions, chunk.actions)
    np.testing.assert_allclose(back.reference, chunk.reference)
    assert back.inference_time == pytest.approx(0.031)

    obs_back = conversions.msg_to_observation(got["obs"], names)
    assert obs_back.stamp == pytest.approx(99.25) and obs_back.sequence == 17
    assert list(obs_back.images) == list(obs.images)
    for cam, img in obs.images.items():
        np.testing.assert_array_equal(obs_back.images[cam], img)
    np.testing.assert_allclose(obs_back.joint_positions, obs.joint_positions)
    assert got["obs"].dropped_frames == 2


def test_raw_vga_images_stream_without_loss(echo_graph):
    node, executor, proc = echo_graph
    frames: list[int] = []
    sizes: set[tuple[int, int]] = set()

    def on_image(msg: Image) -> None:
        img = conversions.image_to_rgb(msg)
        sizes.add(img.shape[:2])
        frames.append(int(img[0, 0, 0]) + 256 * int(img[0, 0, 1]))

    node.create_subscription(Image, "/test/image", on_image,
                             QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE))
    start = node.create_publisher(UInt32, "/test/stream_images", RELIABLE)
    assert spin_until(executor, lambda: start.get_subscription_count() > 0
                      and node.count_publishers("/test/image") > 0, 20.0), proc.output()
    # the echo's image publisher must see our subscription before streaming starts
    assert spin_until(executor, lambda: len(node.get_publishers_info_by_topic("/test/image")) > 0,
                      10.0)
    n = 60
    start.publish(UInt32(data=n))
    assert spin_until(executor, lambda: len(frames) >= n, 30.0), (len(frames), proc.output())
    assert frames == list(range(n))
    assert sizes == {(480, 640)}


def test_command_messages_carry_the_commands_exactly():
    """The smoother's messages hold its float64 commands bit for bit, from arrays of any
    float dtype or lists (the fake robot's joint states), and serialise like lists do."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from wam_ros.core.robot import RobotSpec

    rng = np.random.default_rng(0)
    spec = RobotSpec.load("cobot_magic")
    traj = next(c for c in spec.controllers if c.type == "joint_trajectory")
    fwd = next(c for c in spec.controllers if c.type != "joint_trajectory")
    q = rng.normal(size=len(traj.joints)) * np.array([1e-300, 1e300, 1, -0.0, 3, 7])
    ahead, v = rng.normal(size=(2, q.size)), rng.normal(size=q.size)
    times = [conversions.to_duration(0.05 + 0.02 * k) for k in range(3)]
    msg = conversions.controller_command(traj, q, times, ahead, conversions.to_time(2.0), v,
                                         0.02)
    back = deserialize_message(serialize_message(msg), JointTrajectory)
    rows = np.vstack([q, ahead])
    for point, row in zip(back.points, rows):
        assert np.asarray(point.positions).tobytes() == row.tobytes()
    np.testing.assert_array_equal(back.points[0].velocities, v)
    np.testing.assert_array_equal(back.points[2].velocities, (ahead[1] - ahead[0]) / 0.02)
    data = conversions.controller_command(fwd, q[:len(fwd.joints)].astype(np.float32), []).data
    assert list(data) == [float(x) for x in q[:len(fwd.joints)].astype(np.float32)]
    state = conversions.make_joint_state(["a", "b", "c"], [0, 1.5, np.float32(2.25)], 1.0)
    back = deserialize_message(serialize_message(state), JointState)
    assert list(back.position) == [0.0, 1.5, 2.25] and list(back.velocity) == []


def test_malformed_chunk_is_refused_with_a_reason():
    msg = conversions.chunk_to_msg(_sample_chunk())
    msg.horizon = 17
    with pytest.raises(ValueError, match="expected horizon 17 x dim 14"):
        conversions.msg_to_chunk(msg)
    msg = conversions.chunk_to_msg(_sample_chunk())
    msg.space = 9
    with pytest.raises(ValueError, match="unknown action space 9"):
        conversions.msg_to_chunk(msg)


def test_bad_images_are_refused_with_a_reason():
    img = conversions.rgb_to_image(np.zeros((4, 4, 3), np.uint8), 0.0)
    img.encoding = "yuv422"
    with pytest.raises(conversions.ImageError, match="unsupported encoding 'yuv422'"):
        conversions.image_to_rgb(img)
    img = conversions.rgb_to_image(np.zeros((4, 4, 3), np.uint8), 0.0)
    img.data = bytes(10)
    with pytest.raises(conversions.ImageError, match="data has 10 bytes"):
        conversions.image_to_rgb(img)
    bgr = conversions.rgb_to_image(np.zeros((2, 2, 3), np.uint8), 0.0)
    bgr.encoding = "bgr8"
    bgr.data = bytes([1, 2, 3] * 4)
    assert tuple(conversions.image_to_rgb(bgr)[0, 0]) == (3, 2, 1)
    jpg = conversions.rgb_to_compressed(np.full((8, 8, 3), 200, np.uint8), 0.0, "png")
    assert conversions.compressed_to_rgb(jpg).shape == (8, 8, 3)


def test_serialized_images_are_read_in_place_and_refused_when_malformed():
    """What the observation node's raw camera subscriptions get: rclpy's CDR bytes of an
    Image, read by conversions.image_from_cdr into the same pixels (rgb8, bgr8, mono8 with
    row padding); rgb_to_cdr writes what rclpy writes; broken bytes are an ImageError."""
    from rclpy.serialization import deserialize_message, serialize_message

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for encoding, data, step in (("rgb8", rgb, 64 * 3), ("bgr8", rgb[:, :, ::-1], 64 * 3)):
        msg = conversions.rgb_to_image(rgb, 12.5, "cam_optical_frame")
        msg.encoding, msg.step = encoding, step
        msg.data = np.ascontiguousarray(data).tobytes()
        view = conversions.image_from_cdr(bytes(serialize_message(msg)))
        assert conversions.to_sec(view.header.stamp) == 12.5
        assert view.header.frame_id == "cam_optical_frame"
        np.testing.assert_array_equal(conversions.image_to_rgb(view), rgb)
    mono = conversions.rgb_to_image(rgb, 1.0)
    mono.encoding, mono.step = "mono8", 70  # 6 bytes of padding per row
    padded = np.zeros((48, 70), np.uint8)
    padded[:, :64] = rgb[:, :, 0]
    mono.data = padded.tobytes()
    out = conversions.image_to_rgb(conversions.image_from_cdr(bytes(serialize_message(mono))))
    np.testing.assert_array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))

    raw = conversions.rgb_to_cdr(rgb, 1796507123.123456, "f")
    back = deserialize_message(raw, Image)  # rclpy reads what rgb_to_cdr writes
    # ...and it is what rclpy writes, byte for byte but for alignment padding (which rclpy
    # leaves uninitialised, ours is zero), whatever the padding (frame_id lengths 0-4, odd
    # sizes, a stamp before 1970)
    for frame_id, (h, w), stamp in (("", (3, 5), 0.0), ("a", (1, 1), -1.5),
                                    ("ab", (7, 3), 12.000000001), ("abc", (2, 2), 3.25),
                                    ("cam_high_optical_frame", (48, 64), 1796507123.123456)):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = conversions.rgb_to_cdr(frame, stamp, frame_id)
        theirs = bytes(serialize_message(conversions.rgb_to_image(frame, stamp, frame_id)))
        assert len(ours) == len(theirs)
        differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
        # at most 3 padding bytes after frame_id and 3 after is_bigendian, all before pixels
        assert len(differ) <= 6 and all(ours[i] == 0 and i < len(ours) - h * w * 3
                                        for i in differ), (frame_id, differ)
    with pytest.raises(conversions.ImageError):
        conversions.rgb_to_cdr(rgb[:, :, 0], 1.0)
    assert (back.width, back.height, back.encoding, back.step) == (64, 48, "rgb8", 192)
    assert back.header.frame_id == "f"
    assert conversions.to_sec(back.header.stamp) == pytest.approx(1796507123.123456, abs=1e-6)
    np.testing.assert_array_equal(conversions.image_to_rgb(back), rgb)
    with pytest.raises(conversions.ImageError, match="exceeds|too large|pixels"):
        conversions.image_to_rgb(conversions.image_from_cdr(raw), max_pixels=100)
    # a big-endian writer's bytes read the same
    import struct

    def cdr(order: str, frame_id: bytes, encoding: bytes, data: bytes, size: int) -> bytes:
        body = struct.pack(order + "iII", 7, 250_000_000, len(frame_id)) + frame_id
        body += b"\x00" * (-len(body) % 4) + struct.pack(order + "III", 2, 2, len(encoding) + 1)
        body += encoding + b"\x00"
        body += b"\x00" * (-len(body) % 4) + struct.pack(order + "II", 6, size) + data
        return (b"\x00\x00" if order == ">" else b"\x00\x01") + b"\x00\x00" + body

    pixels = bytes(range(12))
    for order in "<>":
        view = conversions.image_from_cdr(cdr(order, b"f\x00", b"rgb8", pixels, 12))
        assert (view.header.frame_id, view.encoding, view.width, view.step) == ("f", "rgb8", 2, 6)
        assert conversions.to_sec(view.header.stamp) == 7.25
        assert conversions.image_to_rgb(view).tobytes() == pixels
    for broken in (b"", b"\x00\x01\x00\x00", raw[:100], raw[:-10],
                   b"\x00\x07\x00\x00" + raw[4:],  # unknown encapsulation
                   cdr("<", b"f\x00", b"rgb8", pixels, 13),  # data longer than the buffer
                   cdr("<", b"f\x01", b"rgb8", pixels, 12),  # frame_id without its NUL
                   cdr("<", b"\xff\x00", b"rgb8", pixels, 12)):  # not UTF-8
        with pytest.raises(conversions.ImageError) as info:
            conversions.image_from_cdr(broken)
        assert info.value.reason == "undecodable"

