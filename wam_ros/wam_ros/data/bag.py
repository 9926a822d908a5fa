"""rosbag2 bags without ROS: crash-safe episode writing (MCAP segments), reading any rosbag2 bag
(MCAP or sqlite3, Humble..Kilted, also a recorder's unfinished segment), and the CDR facts we
need without deserialising (header stamps).

Crash safety by segments. rosbags' and mcap's writers only produce a readable MCAP file once
they close it (the summary and footer come last), so the episode writer closes its file every
`flush_interval_s` and starts the next one:

    EPISODE/metadata.yaml            rosbag2 metadata (version 9); rewritten atomically after
                                     every closed segment; custom_data holds the episode's
                                     metadata (robot, task, note, success, start/stop, ...)
    EPISODE/EPISODE_0.mcap           closed segments: complete MCAP files, in time order
    EPISODE/EPISODE_1.mcap ...
    EPISODE/EPISODE_7.mcap.partial   the segment being written (not listed in metadata.yaml)

After a SIGKILL (or a power cut, with fsync on) the bag opens with any rosbag2 reader (rosbags,
`ros2 bag info/play`) and holds every message up to the last closed segment; `open_bag` also
reads what reached the disk of the `.partial` segment (`include_partial=True`).

Messages are stored exactly as they arrived (raw CDR from `raw=True` subscriptions); the
schemas come from rosbags' ROS2_KILTED typestore, whose type hashes match the Kilted wheels.
"""

from __future__ import annotations

import heapq
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BAG_VERSION = 9  # rosbag2 metadata version (Jazzy and later; rosbags reads 1..9)
PARTIAL_SUFFIX = ".partial"
# Types whose CDR starts with std_msgs/Header: stamps can be read (and patched) in place.
HEADER_TYPES = frozenset({
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/JointState",
    "trajectory_msgs/msg/JointTrajectory",
})


class RecordingRefused(RuntimeError):
    """The destination cannot take an episode (unwritable, not enough free space)."""


# ---- types and CDR ---------------------------------------------------------------------
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


def image_to_rgb(msg: Any) -> np.ndarray:
    """A deserialised sensor_msgs Image (rgb8 | bgr8 | mono8) or CompressedImage (jpeg | png)
    -> (H, W, 3) uint8 RGB; ValueError names what is wrong."""
    import cv2

    if hasattr(msg, "format"):  # CompressedImage
        bgr = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode {len(msg.data)} bytes as {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"unsupported encoding {msg.encoding!r}; allowed: rgb8, bgr8, mono8")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, np.uint8)
    if h == 0 or w == 0 or step < w * channels or data.size != step * h:
        raise ValueError(f"image {w}x{h} step {step} with {data.size} bytes is inconsistent")
    rows = data.reshape(h, step)[:, : w * channels]
    if channels == 1:
        return np.repeat(rows.reshape(h, w, 1), 3, axis=2)
    img = rows.reshape(h, w, 3)
    return np.ascontiguousarray(img[:, :, ::-1]) if msg.encoding == "bgr8" else img


# ---- the destination ------------------------------------------------------------------
def check_destination(root: str | Path, min_free_bytes: int) -> Path:
    """Refuse (RecordingRefused, one clear sentence) a destination that cannot take an
    episode: not creatable, not writable, or with less than `min_free_bytes` free."""
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".wam_ros_write_probe_{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise RecordingRefused(f"cannot record to {root}: not writable ({exc.strerror or exc})"
                               ) from exc
    free = shutil.disk_usage(root).free
    if free < min_free_bytes:
        raise RecordingRefused(
            f"cannot record to {root}: {free / 2**20:.0f} MiB free, the recorder needs at least "
            f"{min_free_bytes / 2**20:.0f} MiB (min_free_mb) before an episode starts")
    return root


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


# ---- writing ------------------------------------------------------------------------
@dataclass
class _Segment:
    index: int
    path: Path  # the .partial file while open
    file: Any
    writer: Any
    channels: dict[str, int] = field(default_factory=dict)
    schemas: dict[str, int] = field(default_factory=dict)
    opened: float = 0.0  # monotonic seconds
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    count: int = 0
    topic_counts: dict[str, int] = field(default_factory=dict)


class EpisodeBagWriter:
    """One episode as a rosbag2 bag of MCAP segments, closed every `flush_interval_s`.

    Not thread-safe: one thread (the recorder's writer thread) calls write / roll_if_due /
    close. Topics can be added at any time; each segment declares the ones it holds.
    """

    def __init__(self, path: str | Path, *, flush_interval_s: float = 1.0, fsync: bool = True,
                 custom_data: dict[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s: got {flush_interval_s!r}; allowed: > 0")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; a bag is never overwritten")
        self.path.mkdir(parents=True)
        self.flush_interval_s = flush_interval_s
        self.fsync = fsync
        self.custom_data: dict[str, str] = dict(custom_data or {})
        self._monotonic = monotonic
        self.topics: dict[str, str] = {}  # name -> msgtype, in order of first registration
        self.counts: dict[str, int] = {}  # every message written
        self.closed_counts: dict[str, int] = {}  # messages in closed (listed) segments
        self.files: list[dict[str, Any]] = []  # closed segments (metadata "files" entries)
        self.bytes_written = 0
        self.roll_seconds: list[float] = []  # time each segment close + metadata took
        self._segment: _Segment | None = None
        self._closed = False
        self.write_metadata()

    # ---- public -----------------------------------------------------------------------
    def add_topic(self, name: str, msgtype: str) -> None:
        if self.topics.get(name, msgtype) != msgtype:
            raise ValueError(f"topic {name} already has type {self.topics[name]}, not {msgtype}")
        message_definition(msgtype)  # unknown types fail here, not mid-episode
        self.topics.setdefault(name, msgtype)
        self.counts.setdefault(name, 0)
        self.closed_counts.setdefault(name, 0)

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: bag already closed")
        if topic not in self.topics:
            raise KeyError(f"topic {topic} was not added to the bag")
        seg = self._segment or self._open_segment()
        channel = seg.channels.get(topic)
        if channel is None:
            channel = self._register(seg, topic)
        seg.writer.add_message(channel, log_time=timestamp_ns, data=bytes(data),
                               publish_time=timestamp_ns, sequence=seg.count)
        seg.count += 1
        seg.topic_counts[topic] = seg.topic_counts.get(topic, 0) + 1
        seg.start_ns = min(seg.start_ns, timestamp_ns)
        seg.end_ns = max(seg.end_ns, timestamp_ns)
        self.counts[topic] += 1
        self.bytes_written += len(data)
        self.roll_if_due()

    def roll_if_due(self) -> bool:
        """Close the open segment once it is `flush_interval_s` old; True if it did."""
        seg = self._segment
        if seg is None or self._monotonic() - seg.opened < self.flush_interval_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Close the open segment (if any) and rewrite metadata.yaml listing it."""
        seg, self._segment = self._segment, None
        if seg is None:
            return
        t0 = time.perf_counter()
        seg.writer.finish()
        seg.file.flush()
        if self.fsync:
            os.fsync(seg.file.fileno())
        seg.file.close()
        final = seg.path.with_name(seg.path.name[: -len(PARTIAL_SUFFIX)])
        os.replace(seg.path, final)
        for topic, n in seg.topic_counts.items():
            self.closed_counts[topic] += n
        self.files.append({
            "path": final.name,
            "starting_time": {"nanoseconds_since_epoch": seg.start_ns},
            "duration": {"nanoseconds": max(0, seg.end_ns - seg.start_ns)},
            "message_count": seg.count,
        })
        self.write_metadata()
        self.roll_seconds.append(time.perf_counter() - t0)

    def set_custom(self, **values: object) -> None:
        """Episode metadata (stored as strings; written with the next flush / close)."""
        for key, value in values.items():
            self.custom_data[key] = _custom_str(value)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self.write_metadata()

    def abort(self) -> None:
        """Stop after a write error: the open segment stays behind as .partial (readable with
        include_partial), the closed ones stay listed."""
        seg, self._segment = self._segment, None
        self._closed = True
        if seg is not None:
            try:
                seg.file.close()
            except OSError:
                pass

    @property
    def closed_segments(self) -> int:
        return len(self.files)

    # ---- internals --------------------------------------------------------------------
    def _open_segment(self) -> _Segment:
        from mcap.writer import CompressionType, Writer

        index = len(self.files)
        path = self.path / f"{self.path.name}_{index}.mcap{PARTIAL_SUFFIX}"
        f = open(path, "xb")
        # Chunks of 1 MiB (indexed: readers sort messages of several topics by time; a chunk
        # reaches the disk as soon as it is full, so an unfinished segment holds all but the
        # last MiB), no compression (images do not compress cheaply and the CPU is the
        # policy's), no CRCs (1.5 instead of 1.8 ms CPU per 640x480 image).
        writer = Writer(f, chunk_size=2**20, compression=CompressionType.NONE,
                        enable_crcs=False)
        writer.start(profile="ros2", library="wam_ros")
        self._segment = _Segment(index, path, f, writer, opened=self._monotonic())
        return self._segment

    def _register(self, seg: _Segment, topic: str) -> int:
        msgtype = self.topics[topic]
        if msgtype not in seg.schemas:
            text, _ = message_definition(msgtype)
            seg.schemas[msgtype] = seg.writer.register_schema(msgtype, "ros2msg", text.encode())
        seg.channels[topic] = seg.writer.register_channel(
            topic, "cdr", seg.schemas[msgtype], metadata={"offered_qos_profiles": "[]"})
        return seg.channels[topic]

    def write_metadata(self) -> None:
        starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in self.files]
        ends = [s + f["duration"]["nanoseconds"] for s, f in zip(starts, self.files)]
        start = min(starts) if starts else 0
        count = sum(f["message_count"] for f in self.files)
        info = {
            "version": BAG_VERSION,
            "storage_identifier": "mcap",
            "relative_file_paths": [f["path"] for f in self.files],
            "duration": {"nanoseconds": (max(ends) - start) if ends else 0},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": [
                {"topic_metadata": {"name": t, "type": m, "serialization_format": "cdr",
                                    "offered_qos_profiles": [],
                                    "type_description_hash": message_definition(m)[1]},
                 "message_count": self.closed_counts[t]}
                for t, m in self.topics.items()],
            "compression_format": "",
            "compression_mode": "",
            "files": self.files,
            "custom_data": dict(self.custom_data),
            "ros_distro": "kilted",
        }
        _write_atomic(self.path / "metadata.yaml",
                      yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False),
                      self.fsync)


def _custom_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def update_custom_data(bag: str | Path, **values: object) -> dict[str, str]:
    """Rewrite metadata.yaml's custom_data of a closed bag (e.g. success marked after stop)."""
    path = Path(bag) / "metadata.yaml"
    doc = yaml.safe_load(path.read_text())
    info = doc["rosbag2_bagfile_information"]
    custom = dict(info.get("custom_data") or {})
    custom.update({k: _custom_str(v) for k, v in values.items()})
    info["custom_data"] = custom
    _write_atomic(path, yaml.safe_dump(doc, sort_keys=False), fsync=True)
    return custom


# ---- reading ------------------------------------------------------------------------
@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp: int  # ns, the bag's (receive) time
    data: bytes  # raw CDR


@dataclass
class Bag:
    """Any rosbag2 bag opened for reading (see open_bag)."""

    path: Path
    topics: dict[str, str]  # name -> msgtype
    counts: dict[str, int]
    custom: dict[str, str]
    storage: str  # mcap | sqlite3
    partial_messages: int = 0  # read from an unfinished segment
    indexed_range: tuple[int, int] | None = None  # first / last timestamp from the index
    _sources: list[Callable[[set[str] | None], Iterator[BagMessage]]] = field(
        default_factory=list, repr=False)

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """All messages (of `topics`) in timestamp order, across segments / files."""
        wanted = set(topics) if topics is not None else None
        streams = [src(wanted) for src in self._sources]
        if len(streams) == 1:
            yield from streams[0]
        else:
            yield from heapq.merge(*streams, key=lambda m: m.timestamp)

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def time_range(self) -> tuple[int, int]:
        """First and last message timestamp (ns): from the bag's index when it has one (no
        message read), else by a scan."""
        if self.indexed_range is not None:
            return self.indexed_range
        first = last = None
        for m in self.messages():
            first = m.timestamp if first is None else first
            last = m.timestamp
        if first is None:
            raise ValueError(f"{self.path}: the bag holds no messages")
        return first, last


def _rosbags_source(path: Path) -> tuple[dict[str, str], dict[str, int], dict[str, str], str,
                                         Callable[[set[str] | None], Iterator[BagMessage]]]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        counts: dict[str, int] = {}
        for c in reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        custom: dict[str, str] = {}
        if path.is_dir():
            doc = yaml.safe_load((path / "metadata.yaml").read_text())
            custom = dict(doc["rosbag2_bagfile_information"].get("custom_data") or {})
        storage = "sqlite3" if any(p.suffix == ".db3" for p in _storage_files(path)) else "mcap"

    def stream(wanted: set[str] | None) -> Iterator[BagMessage]:
        with Reader(path) as r:
            conns = [c for c in r.connections if wanted is None or c.topic in wanted]
            if not conns:
                return
            for conn, ts, data in r.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, ts, bytes(data))

    return topics, counts, custom, storage, stream


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]

    def order(p: Path) -> tuple[int, str]:
        stem = p.name.split(".")[0]
        tail = stem.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else 0, p.name)

    return sorted((p for p in path.iterdir() if p.suffix in (".mcap", ".db3")), key=order)


def _partial_source(path: Path) -> tuple[dict[str, str], list[BagMessage]]:
    """Messages that reached the disk of an unfinished MCAP file (up to its last complete
    chunk or record); everything after a truncation is ignored."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    out: list[BagMessage] = []
    with open(path, "rb") as f:
        reader = StreamReader(f, skip_magic=False)
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                elif isinstance(record, Message) and record.channel_id in channels:
                    topic, msgtype = channels[record.channel_id]
                    out.append(BagMessage(topic, msgtype, record.log_time, bytes(record.data)))
        except Exception:  # truncated at the kill: keep what parsed
            pass
    return {t: m for t, m in channels.values()}, out


def _list_source(msgs: list[BagMessage]) -> Callable[[set[str] | None], Iterator[BagMessage]]:
    ordered = sorted(msgs, key=lambda m: m.timestamp)

    def stream(wanted: set[str] | None) -> Iterator[BagMessage]:
        return (m for m in ordered if wanted is None or m.topic in wanted)

    return stream


def open_bag(path: str | Path, include_partial: bool = False) -> Bag:
    """A rosbag2 bag directory (metadata.yaml + .mcap / .db3 files), a directory whose
    metadata.yaml is missing (a `ros2 bag record` that was killed), or a single .mcap / .db3
    file. include_partial: also read an unfinished `.partial` segment left by a killed
    recorder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such bag")
    sources: list[Callable[[set[str] | None], Iterator[BagMessage]]] = []
    topics: dict[str, str] = {}
    counts: dict[str, int] = {}
    custom: dict[str, str] = {}
    storage = "mcap"
    from rosbags.rosbag2 import ReaderError

    indexed: tuple[int, int] | None = None
    if path.is_file() or (path / "metadata.yaml").is_file():
        topics, counts, custom, storage, stream = _rosbags_source(path)
        sources.append(stream)
        indexed = _indexed_range(path)
    else:
        files = _storage_files(path)
        if not files and not list(path.glob(f"*{PARTIAL_SUFFIX}")):
            raise FileNotFoundError(f"{path}: not a rosbag2 bag (no metadata.yaml, .mcap or .db3)")
        for f in files:
            try:
                t, c, _, storage, stream = _rosbags_source(f)
            except ReaderError:
                if f.suffix != ".mcap":
                    raise
                # an MCAP file whose writer was killed (no summary / footer): read what
                # reached the disk, record by record
                t, msgs = _partial_source(f)
                c = {}
                for m in msgs:
                    c[m.topic] = c.get(m.topic, 0) + 1
                stream = _list_source(msgs)
            topics.update(t)
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            sources.append(stream)
    partial_count = 0
    if include_partial and path.is_dir():
        for part in sorted(path.glob(f"*{PARTIAL_SUFFIX}")):
            t, msgs = _partial_source(part)
            topics.update({k: v for k, v in t.items() if k not in topics})
            for m in msgs:
                counts[m.topic] = counts.get(m.topic, 0) + 1
            partial_count += len(msgs)
            sources.append(_list_source(msgs))
    if partial_count:
        indexed = None  # the unfinished segment may extend the range
    return Bag(path, topics, counts, custom, storage, partial_count, indexed, sources)


def _indexed_range(path: Path) -> tuple[int, int] | None:
    from rosbags.rosbag2 import Reader

    with Reader(path) as r:
        if r.message_count == 0:
            return None
        return r.start_time, r.end_time - 1  # rosbags' end_time is one past the last


__all__ = [
    "HEADER_TYPES", "Bag", "BagMessage", "EpisodeBagWriter", "RecordingRefused",
    "check_destination", "deserialize", "header_stamp_ns", "image_to_rgb",
    "message_definition", "open_bag", "serialize", "stamp_of", "typestore",
    "update_custom_data", "with_header_stamp",
]
