"""Serialised ROS messages without ROS (rosbags' typestore), and a synthetic teleop episode bag
for tests and smoke runs: the same topics, types and timing a recorder produces on the robot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wam_ros.core.robot import RobotSpec
from wam_ros.data.bag_writer import EpisodeBagWriter
from wam_ros.data.cdr import serialize, typestore
from wam_ros.data.recorder import recorded_topics
from wam_ros.data.teleop import LeaderMap, ScriptedOperator

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"


def _header(stamp_ns: int, frame_id: str = "") -> object:
    t = typestore().types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                               nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id)


def joint_state_cdr(names: list[str] | tuple[str, ...], positions: np.ndarray,
                    stamp_ns: int) -> bytes:
    js = typestore().types[JOINT_STATE]
    empty = np.zeros(0, np.float64)
    return serialize(js(header=_header(stamp_ns), name=list(names),
                        position=np.asarray(positions, np.float64), velocity=empty,
                        effort=empty), JOINT_STATE)


def trajectory_cdr(names: list[str] | tuple[str, ...], positions: np.ndarray,
                   stamp_ns: int) -> bytes:
    t = typestore().types
    empty = np.zeros(0, np.float64)
    point = t["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.asarray(positions, np.float64), velocities=empty, accelerations=empty,
        effort=empty, time_from_start=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0))
    return serialize(t[JOINT_TRAJECTORY](header=_header(stamp_ns), joint_names=list(names),
                                         points=[point]), JOINT_TRAJECTORY)


def image_cdr(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8",
              frame_id: str = "") -> bytes:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image (rgb8 | bgr8) or CompressedImage (jpeg |
    png) CDR."""
    t = typestore().types
    if encoding in ("jpeg", "png"):
        import cv2

        ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png",
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return serialize(t[COMPRESSED_IMAGE](header=_header(stamp_ns, frame_id),
                                             format=encoding,
                                             data=np.frombuffer(buf.tobytes(), np.uint8)),
                         COMPRESSED_IMAGE)
    pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    h, w = rgb.shape[:2]
    return serialize(t[IMAGE](header=_header(stamp_ns, frame_id), height=h, width=w,
                              encoding=encoding, is_bigendian=0, step=w * 3,
                              data=np.ascontiguousarray(pixels).reshape(-1)), IMAGE)


def frame_of(state: np.ndarray, h: int, w: int, camera_index: int) -> np.ndarray:
    """A picture that moves with the joints: one bright bar per joint pair, per camera a
    different background, so a model can read the state back from the images."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (30 + 40 * camera_index, 60, 90)
    for i in range(0, len(state), 2):
        x = int((np.sin(state[i] * 1.7) * 0.45 + 0.5) * (w - 3))
        img[:, x:x + 3, i % 3] = 240
    y = int(np.clip(state[-1], 0, 1) * (h - 3))  # a gripper as a horizontal bar
    img[y:y + 3, :, (camera_index + 1) % 3] = 200
    return img


def leader_cdr(spec: RobotSpec, leaders: LeaderMap, action: np.ndarray, stamp_ns: int,
               follower: np.ndarray | None = None) -> dict[str, bytes]:
    """topic -> serialised leader / command message for an action (grippers normalised)."""
    out = {}
    values = leaders.to_messages(action, follower)
    for s in leaders.sources:
        make = joint_state_cdr if s.type == "joint_state" else trajectory_cdr
        out[s.topic] = make(s.names, values[s.name], stamp_ns)
    return out


def write_synthetic_episode(path: str | Path, spec: RobotSpec | str, seconds: float = 4.0, *,
                            storage: str = "mcap", image_size: tuple[int, int] = (48, 64),
                            camera_hz: float = 30.0, joint_hz: float = 50.0,
                            leader_hz: float = 50.0, lag_s: float = 0.1, seed: int = 0,
                            start_s: float = 100.0, task: str = "synthetic teleop",
                            encoding: str = "rgb8", flush_interval_s: float = 1.0) -> Path:
    """A teleop episode as a recorder writes it: the leaders follow a ScriptedOperator, the
    follower reaches the leader's command `lag_s` later, cameras show the follower.
    storage: mcap (our segmented writer) or sqlite3 (rosbags' Writer, as `ros2 bag record
    -s sqlite3` writes)."""
    spec = spec if isinstance(spec, RobotSpec) else RobotSpec.load(spec)
    leaders = LeaderMap(spec)
    operator = ScriptedOperator(spec, seed=seed, ramp_s=0.5)
    home = spec.joint_to_action(spec.home_vector())
    h, w = image_size
    topics = recorded_topics(spec)
    cam_topic = {c.name: c.topic for c in spec.cameras}
    if encoding in ("jpeg", "png"):  # image_transport's compressed topics
        for c in spec.cameras:
            del topics[c.topic]
            cam_topic[c.name] = c.topic.rstrip("/") + "/compressed"
            topics[cam_topic[c.name]] = COMPRESSED_IMAGE
    events: list[tuple[int, str, bytes]] = []
    to_ns = 1_000_000_000

    def action_at(t: float) -> np.ndarray:
        return leaders.clip(operator.action(max(t, 0.0), home))

    joint_names = list(spec.action_layout) + list(spec.fixed_joints)
    fixed = list(spec.fixed_joints.values())
    for k in range(int(seconds * joint_hz)):
        t = k / joint_hz
        q = spec.action_to_joint(action_at(t - lag_s))
        stamp = int((start_s + t) * to_ns)
        events.append((stamp, spec.joint_state_topic,
                       joint_state_cdr(joint_names, list(q) + fixed, stamp)))
    for k in range(int(seconds * leader_hz)):
        t = k / leader_hz
        stamp = int((start_s + t) * to_ns)
        follower = action_at(t - lag_s)
        for topic, raw in leader_cdr(spec, leaders, action_at(t), stamp, follower).items():
            events.append((stamp, topic, raw))
    for k in range(int(seconds * camera_hz)):
        t = k / camera_hz
        stamp = int((start_s + t) * to_ns)
        state = action_at(t - lag_s)
        for ci, cam in enumerate(spec.cameras):
            enc = cam.encoding if encoding == "rgb8" and cam.compressed else encoding
            events.append((stamp + 2_000_000 * ci, cam_topic[cam.name],
                           image_cdr(frame_of(state, h, w, ci), stamp, enc)))
    events.sort(key=lambda e: e[0])
    custom = {"format": "wam_ros.episode/1", "robot": spec.name, "task": task, "note": "",
              "success": "true", "start_time": f"{start_s:.6f}",
              "stop_time": f"{start_s + seconds:.6f}", "complete": "true"}
    path = Path(path)
    delay = 1_000_000  # 1 ms transport: bag time = receive time
    if storage == "mcap":
        clock = [0.0]  # segments roll on the episode's own time
        writer = EpisodeBagWriter(path, flush_interval_s=flush_interval_s, fsync=False,
                                  custom_data=custom, monotonic=lambda: clock[0])
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype)
        for stamp, topic, raw in events:
            clock[0] = stamp * 1e-9
            writer.write(topic, stamp + delay, raw)
        writer.close()
    elif storage == "sqlite3":
        from rosbags.rosbag2 import StoragePlugin, Writer

        with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
            conns = {topic: writer.add_connection(topic, msgtype, typestore=typestore())
                     for topic, msgtype in topics.items()}
            for key, value in custom.items():
                writer.set_custom_data(key, value)
            for stamp, topic, raw in events:
                writer.write(conns[topic], stamp + delay, raw)
    else:
        raise ValueError(f"storage {storage!r}; allowed: mcap, sqlite3")
    return path


__all__ = ["frame_of", "image_cdr", "joint_state_cdr", "leader_cdr",
           "trajectory_cdr", "write_synthetic_episode"]
