"""Message <-> numpy / core types: the one module that knows both sides.

Performance notes (measured, PLATFORM.md): fill `Image.data` with `bytes` (~0.3 ms for 640x480)
rather than a numpy array (~75 ms through the generated setter); read it back with
`np.frombuffer`, which does not copy.
"""

from __future__ import annotations

import array
import functools
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# the image decoder is core.image's (shared with the bags); the nodes reach it through here
from wam_ros.core.image import (  # noqa: F401
    RAW_ENCODINGS,
    ImageError,
    compressed_to_rgb,
    image_to_rgb,
)
from wam_ros.core.types import ActionSpace, Chunk, Observation
from wam_ros_msgs.msg import ActionChunk
from wam_ros_msgs.msg import Observation as ObservationMsg


# ---- time ----------------------------------------------------------------------------
def to_sec(stamp: Time | Duration) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_time(seconds: float) -> Time:
    ns = round(seconds * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def to_duration(seconds: float) -> Duration:
    ns = round(seconds * 1e9)
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def doubles(values) -> array.array:
    """A float64[] message field's value: rclpy keeps such fields as array('d') and takes one
    as it is, where a list is type- and range-checked element by element first (most of the
    smoother's message building on every control tick)."""
    return array.array("d", np.ascontiguousarray(values, dtype=np.float64).tobytes())


# ---- controller commands ---------------------------------------------------------------
# The robot config's controllers (config/robots/*.yaml): a joint_trajectory_controller takes a
# JointTrajectory on ~/joint_trajectory, a forward_command_controller a Float64MultiArray on
# ~/commands. The smoother and the teleop node encode with these; the simulator and the fake
# robot decode with them.
def controller_msg_type(controller) -> type:
    return JointTrajectory if controller.type == "joint_trajectory" else Float64MultiArray


def controller_command(controller, q: np.ndarray, point_times: list[Duration],
                       ahead: np.ndarray | None = None, stamp: Time | None = None,
                       velocity: np.ndarray | None = None, period: float = 0.0):
    """One command for `controller`: `q` (J,) positions of its joints. A forward controller
    gets `q`; a trajectory controller a point at q, then one per row of `ahead` (the
    commands that follow, `period` apart), at `point_times` (time_from_start), stamped
    `stamp` (the time the command is for; None: zero, "on receipt"). With `velocity` (J,) at
    q, every point carries velocities (the later ones from the rows' differences)."""
    if controller.type != "joint_trajectory":
        return Float64MultiArray(data=doubles(q))
    rows = q[None, :] if ahead is None else np.vstack([q[None, :], ahead])
    msg = trajectory_msg(controller.joints, rows, point_times, stamp)
    if velocity is not None:
        velocities = np.vstack([velocity[None, :], np.diff(rows, axis=0) / period])
        for point, v in zip(msg.points, velocities):
            point.velocities = doubles(v)
    return msg


def trajectory_msg(names, rows: np.ndarray, point_times: list[Duration] | None = None,
                   stamp: Time | None = None) -> JointTrajectory:
    """A JointTrajectory of `names` with one point per row of `rows` (time_from_start from
    `point_times`; None: zero)."""
    msg = JointTrajectory(joint_names=list(names))
    if stamp is not None:
        msg.header.stamp = stamp
    times = point_times if point_times is not None else [Duration()] * len(rows)
    msg.points = [JointTrajectoryPoint(positions=doubles(r), time_from_start=t)
                  for r, t in zip(rows, times)]
    return msg


def trajectory_arrays(msg: JointTrajectory
                      ) -> tuple[list[str], float, np.ndarray, np.ndarray, np.ndarray | None]:
    """(joint names, header stamp s, point times s (P,), positions (P, J), velocities (P, J)
    or None unless every point carries them) of a JointTrajectory."""
    times = np.array([to_sec(p.time_from_start) for p in msg.points])
    pos = np.array([list(p.positions) for p in msg.points])
    has_vel = all(len(p.velocities) == len(msg.joint_names) for p in msg.points)
    vel = np.array([list(p.velocities) for p in msg.points]) if has_vel else None
    return list(msg.joint_names), to_sec(msg.header.stamp), times, pos, vel


# ---- images --------------------------------------------------------------------------
def rgb_to_image(rgb: np.ndarray, stamp: float, frame_id: str = "") -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    msg = Image()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


# Raw camera frames travel serialized: rclpy's own conversion of a 640x480 rgb8 Image copies
# its pixels twice (into the C message, then into a Python array), 1.7-4.6 ms per frame on
# two busy cores, either way; three cameras at 30 Hz made that most of the observation node's
# CPU. The CDR is read here directly instead, the pixels viewed in place: a fixed layout
# needs no generic codec, and every set's last frame waits for this read
# (docs/results/2026-12-06-realtime-default.md).
@dataclass(frozen=True)
class CdrStamp:
    sec: int
    nanosec: int


@dataclass(frozen=True)
class CdrHeader:
    stamp: CdrStamp
    frame_id: str


@dataclass(frozen=True)
class CdrImage:
    """The fields of a sensor_msgs/Image read from its CDR; `data` views the serialized
    bytes."""

    header: CdrHeader
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


def image_from_cdr(raw: bytes) -> CdrImage:
    """A serialized sensor_msgs/Image (a raw subscription's message) -> its fields, the pixels
    a view of `raw`: image_to_rgb reads it like an Image. Malformed bytes (truncated, lengths
    past the end, an unknown encapsulation) raise ImageError."""
    buf = memoryview(raw)
    try:
        if len(buf) < 4 or buf[0] != 0 or buf[1] not in (0, 1):
            raise ValueError("no CDR encapsulation header")
        order = "<" if buf[1] == 1 else ">"
        body = buf[4:]
        pos = 0

        def take(fmt: str, align: int):
            nonlocal pos
            pos += -pos % align
            values = struct.unpack_from(order + fmt, body, pos)
            pos += struct.calcsize(fmt)
            return values

        def string() -> str:
            nonlocal pos
            (n,) = take("I", 4)
            if n < 1 or pos + n > len(body) or body[pos + n - 1] != 0:
                raise ValueError(f"string of {n} bytes at {pos} does not fit or is unterminated")
            text = bytes(body[pos:pos + n - 1]).decode()
            pos += n
            return text

        sec, nanosec = take("iI", 4)
        frame_id = string()
        height, width = take("II", 4)
        encoding = string()
        (is_bigendian,) = take("B", 1)
        step, size = take("II", 4)
        if pos + size > len(body):
            raise ValueError(f"data of {size} bytes at {pos}, {len(body) - pos} left")
        return CdrImage(CdrHeader(CdrStamp(sec, nanosec), frame_id), height, width, encoding,
                        is_bigendian, step, body[pos:pos + size])
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ImageError(f"not a serialized sensor_msgs/Image ({len(raw)} bytes): "
                         f"{type(exc).__name__}: {exc}", "undecodable") from exc


def rgb_to_cdr(rgb: np.ndarray, stamp: float, frame_id: str = "") -> bytes:
    """(H, W, 3) uint8 RGB -> a serialized sensor_msgs/Image rgb8, byte for byte what rclpy's
    serialize_message writes (Publisher.publish takes it as is). Written directly: the fields
    before the pixels are fixed per camera, so a frame costs one copy of its pixels, as a
    camera driver in C++ spends, instead of a generic serializer's field-by-field work."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    ns = round(stamp * 1e9)
    sec, nanosec = divmod(ns, 1_000_000_000)
    return b"".join((_CDR_LE, struct.pack("<iI", sec, nanosec),
                     _image_cdr_fields(int(rgb.shape[0]), int(rgb.shape[1]), frame_id),
                     np.ascontiguousarray(rgb).data))


_CDR_LE = b"\x00\x01\x00\x00"  # encapsulation: plain CDR, little endian


@functools.lru_cache(maxsize=32)
def _image_cdr_fields(height: int, width: int, frame_id: str) -> bytes:
    """An rgb8 Image's CDR between the stamp and the pixels (the body's offsets align from
    after the encapsulation): frame_id, height, width, encoding, is_bigendian, step, and the
    data sequence's length."""
    out = bytearray()

    def string(text: str) -> None:
        raw = text.encode() + b"\x00"
        out.extend(struct.pack("<I", len(raw)) + raw)

    def align4() -> None:
        out.extend(b"\x00" * (-(8 + len(out)) % 4))  # 8: the stamp before these fields

    string(frame_id)
    align4()
    out.extend(struct.pack("<II", height, width))
    string("rgb8")
    out.append(0)  # is_bigendian
    align4()
    out.extend(struct.pack("<II", width * 3, height * width * 3))  # step, len(data)
    return bytes(out)


def rgb_to_compressed(rgb: np.ndarray, stamp: float, fmt: str = "jpeg") -> CompressedImage:
    ext = {"jpeg": ".jpg", "png": ".png"}[fmt]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(f"could not encode image as {fmt}")
    msg = CompressedImage()
    msg.header.stamp = to_time(stamp)
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg


# ---- joint states --------------------------------------------------------------------
def joint_positions(msg: JointState, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Positions of `names` (in that order) from a JointState; KeyError names what is missing."""
    if len(msg.position) != len(msg.name):
        raise ValueError(f"JointState has {len(msg.name)} names but {len(msg.position)} positions")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"joint state lacks {missing}")
    return np.array([msg.position[index[n]] for n in names], dtype=np.float64)


def make_joint_state(names, positions, stamp: float, velocities=None) -> JointState:
    msg = JointState()
    msg.header.stamp = to_time(stamp)
    msg.name = list(names)
    msg.position = doubles(positions)
    if velocities is not None:
        msg.velocity = doubles(velocities)
    return msg


# ---- observation ---------------------------------------------------------------------
def observation_to_msg(
    obs: Observation, joint_names, image_stamps: dict[str, float] | None = None,
    dropped_frames: int = 0, received: float | None = None,
) -> ObservationMsg:
    """`received`: when the newest frame reached the node (None: unknown, left zero)."""
    msg = ObservationMsg()
    msg.header.stamp = to_time(obs.stamp)
    msg.camera_names = list(obs.images)
    msg.images = [rgb_to_image(img, obs.stamp, name) for name, img in obs.images.items()]
    stamps = image_stamps or {}
    msg.image_stamps = [to_time(stamps.get(name, obs.stamp)) for name in obs.images]
    msg.joint_state = make_joint_state(joint_names, obs.joint_positions, obs.stamp)
    msg.sequence = int(obs.sequence)
    msg.dropped_frames = int(dropped_frames)
    if received is not None:
        msg.received = to_time(received)
    return msg


def msg_to_observation(msg: ObservationMsg, joint_names, task: str = "") -> Observation:
    if len(msg.camera_names) != len(msg.images):
        raise ValueError(f"{len(msg.camera_names)} camera names for {len(msg.images)} images")
    images = {n: image_to_rgb(img) for n, img in zip(msg.camera_names, msg.images)}
    return Observation(
        stamp=to_sec(msg.header.stamp),
        images=images,
        joint_positions=joint_positions(msg.joint_state, joint_names),
        task=task,
        sequence=msg.sequence,
    )


# ---- action chunks -------------------------------------------------------------------
def chunk_to_msg(chunk: Chunk, frame_id: str = "") -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp = to_time(chunk.stamp)
    msg.header.frame_id = frame_id
    msg.chunk_id = int(chunk.chunk_id)
    msg.episode_id = int(chunk.episode_id)
    msg.space = int(chunk.space)
    msg.names = list(chunk.names)
    msg.horizon, msg.dim = chunk.horizon, chunk.dim
    msg.dt = float(chunk.dt)
    msg.start_offset = to_duration(chunk.start_offset)
    # array('f') from bytes: the generated setter accepts it without a per-element check
    msg.data = np.ascontiguousarray(chunk.actions, dtype=np.float32).ravel()
    if chunk.reference is not None:
        msg.reference = np.asarray(chunk.reference, dtype=np.float64)
        msg.reference_names = list(chunk.names)
    msg.inference_time = float(chunk.inference_time)
    msg.blocking_time = float(chunk.blocking_time)
    return msg


def msg_to_chunk(msg: ActionChunk) -> Chunk:
    """ActionChunk -> Chunk, validating sizes (a malformed chunk raises ValueError)."""
    if msg.space not in (s.value for s in ActionSpace):
        raise ValueError(f"unknown action space {msg.space}; allowed: 0, 1, 2")
    data = np.asarray(msg.data, dtype=np.float32)
    if data.size != msg.horizon * msg.dim or msg.horizon == 0:
        raise ValueError(
            f"chunk data has {data.size} values, expected horizon {msg.horizon} x dim {msg.dim}"
        )
    if msg.names and len(msg.names) != msg.dim:
        raise ValueError(f"{len(msg.names)} names for dim {msg.dim}")
    reference = np.asarray(msg.reference, dtype=np.float64) if len(msg.reference) else None
    return Chunk(
        stamp=to_sec(msg.header.stamp),
        actions=data.reshape(msg.horizon, msg.dim).copy(),
        dt=msg.dt,
        space=ActionSpace(msg.space),
        names=tuple(msg.names),
        chunk_id=msg.chunk_id,
        episode_id=msg.episode_id,
        start_offset=to_sec(msg.start_offset),
        reference=reference,
        inference_time=msg.inference_time,
        blocking_time=msg.blocking_time,
    )
