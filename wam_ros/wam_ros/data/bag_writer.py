"""rosbag2 bags without ROS, writing: crash-safe episode bags of MCAP segments, and the check
that a destination can take an episode.

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
`ros2 bag info/play`) and holds every message up to the last closed segment;
`data.bag_reader.open_bag` also reads what reached the disk of the `.partial` segment
(`include_partial=True`).

Messages are stored exactly as they arrived (raw CDR from `raw=True` subscriptions); the
schemas come from rosbags' ROS2_KILTED typestore (data.cdr).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wam_ros.data.cdr import message_definition

BAG_VERSION = 9  # rosbag2 metadata version (Jazzy and later; rosbags reads 1..9)
PARTIAL_SUFFIX = ".partial"


class RecordingRefused(RuntimeError):
    """The destination cannot take an episode (unwritable, not enough free space)."""


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



__all__ = [
    "BAG_VERSION", "PARTIAL_SUFFIX", "EpisodeBagWriter", "RecordingRefused",
    "check_destination", "update_custom_data",
]
