"""rosbag2 bags without ROS, reading: any rosbag2 bag (MCAP or sqlite3, Humble..Kilted), also
a killed `ros2 bag record` (no metadata.yaml, MCAP files without footer) and the unfinished
`.partial` segment a killed recorder (data.bag_writer) leaves behind. Messages come as exact
bytes (raw CDR; data.cdr deserialises them), merged in time order across files.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wam_ros.data.bag_writer import PARTIAL_SUFFIX


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


__all__ = ["Bag", "BagMessage", "open_bag"]
