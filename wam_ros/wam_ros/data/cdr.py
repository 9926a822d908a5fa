"""Serialised ROS 2 messages without ROS: rosbags' ROS2_KILTED typestore (whose type hashes
match the Kilted wheels), message definitions as `ros2 bag` stores them, CDR (de)serialisation
and the CDR facts we need without deserialising (header stamps).
"""

from __future__ import annotations

import struct
from functools import cache, lru_cache
from typing import Any

# Types whose CDR starts with std_msgs/Header: stamps can be read (and patched) in place.
HEADER_TYPES = frozenset({
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/JointState",
    "trajectory_msgs/msg/JointTrajectory",
})


@lru_cache(maxsize=1)
def typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


@cache
def message_definition(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 hash) of a message type, as `ros2 bag` stores them."""
    store = typestore()
    if msgtype not in store.types:
        raise KeyError(f"unknown message type {msgtype!r}")
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)


def header_stamp_ns(raw: bytes | memoryview, msgtype: str) -> int | None:
    """header.stamp of a serialised message in ns, or None for types without a header."""
    if msgtype not in HEADER_TYPES or len(raw) < 12:
        return None
    endian = "<" if raw[1] == 1 else ">"  # CDR encapsulation: 0x0001 little, 0x0000 big
    sec, nanosec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def with_header_stamp(raw: bytes, msgtype: str, stamp_ns: int) -> bytes:
    """A copy of a serialised message with header.stamp replaced (same size, same layout)."""
    if msgtype not in HEADER_TYPES:
        return raw
    endian = "<" if raw[1] == 1 else ">"
    out = bytearray(raw)
    struct.pack_into(endian + "iI", out, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return bytes(out)


def deserialize(raw: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(raw, msgtype)


def serialize(msg: Any, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def stamp_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


__all__ = [
    "HEADER_TYPES", "deserialize", "header_stamp_ns", "message_definition", "serialize",
    "stamp_of", "typestore", "with_header_stamp",
]
