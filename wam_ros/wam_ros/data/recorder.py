"""Episode recorder (ROS-free): raw messages in, one crash-safe rosbag2 bag per episode out.

    rec = Recorder(RecorderConfig("episodes"), robot="cobot_magic", topics={...}, clock=...)
    rec.start(task="fold the towel", note="operator A")   # refused before it starts if the
                                                          # destination cannot take it
    rec.offer(topic, raw_cdr, receive_ns)                 # from subscription callbacks
    rec.stop()  |  rec.discard()                          # keep or delete the bag
    rec.mark(success=True)                                # the current or the last episode

`offer` never blocks the caller (a subscription callback): messages go through a bounded queue to
one writer thread, which writes them into `EpisodeBagWriter` (MCAP segments closed every
`flush_interval_s`, so a SIGKILLed recorder loses at most that much). A full queue drops the
message and counts it; so does a gap in the publisher's sequence numbers (lost in transport).
Messages whose header stamp is older than `late_threshold_s` on arrival are recorded and
counted as late.

Episode metadata goes into the bag's metadata.yaml `custom_data`: robot, task, note, success,
start_time / stop_time (seconds, the recorder's clock), complete (false until a clean stop),
counts of dropped / late messages, the flush interval, the recorder version.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wam_ros.core.robot import RobotSpec
from wam_ros.data.bag_writer import (
    EpisodeBagWriter,
    RecordingRefused,
    check_destination,
    update_custom_data,
)
from wam_ros.data.cdr import header_stamp_ns

RECORDER_FORMAT = "wam_ros.episode/1"


def recorded_topics(spec: RobotSpec, teleop: bool = True) -> dict[str, str]:
    """topic -> message type of what the recorder records for a robot: the cameras, the
    follower joint states and (teleop) the robot config's teleop topics."""
    out = {c.topic: ("sensor_msgs/msg/CompressedImage" if c.compressed
                     else "sensor_msgs/msg/Image") for c in spec.cameras}
    out[spec.joint_state_topic] = "sensor_msgs/msg/JointState"
    if teleop and spec.teleop is not None:
        out.update({s.topic: s.msgtype for s in spec.teleop.sources})
    return out


@dataclass(frozen=True)
class RecorderConfig:
    """output_dir: episodes go to output_dir/<robot>_<date>_<time>_<n>/.
    flush_interval_s: a segment is closed (and fsynced) this often: the most a crash loses.
    fsync: also survive power loss, not only a killed process.
    queue_mb: messages waiting for the writer thread; beyond it new ones are dropped.
    min_free_mb: refuse to start an episode with less free space than this.
    stop_free_mb: stop (and keep) an episode when free space falls below this while writing.
    late_threshold_s: a message older than this on arrival (header stamp) counts as late.
    max_episode_s: stop (and keep) an episode after this long (0 = no limit).
    stop_grace_s: on stop, wait up to this long for messages the middleware received before
        the stop but the executor had not delivered yet (a busy recorder lags behind).
    """

    output_dir: str = "episodes"
    flush_interval_s: float = 1.0
    fsync: bool = True
    queue_mb: float = 512.0
    min_free_mb: float = 2048.0
    stop_free_mb: float = 256.0
    late_threshold_s: float = 0.2
    max_episode_s: float = 0.0
    stop_grace_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("flush_interval_s", "queue_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RecorderConfig.{name}: got {getattr(self, name)!r}; "
                                 "allowed: > 0")
        for name in ("min_free_mb", "stop_free_mb", "late_threshold_s", "max_episode_s",
                     "stop_grace_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RecorderConfig.{name}: got {getattr(self, name)!r}; "
                                 "allowed: >= 0")
        if not self.output_dir:
            raise ValueError("RecorderConfig.output_dir: allowed: a non-empty path")


KEY_ACTIONS = ("toggle", "start", "stop", "discard", "success", "failure", "quit")
DEFAULT_KEYS = ("space:toggle,pagedown:toggle,s:start,e:stop,d:discard,pageup:discard,"
                "y:success,n:failure,q:quit")


def parse_key_bindings(text: str) -> dict[str, str]:
    """"key:action,..." -> {key: action}; ValueError names a bad entry and the choices."""
    out = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        key, sep, action = entry.rpartition(":")
        if not sep or not key or action not in KEY_ACTIONS:
            raise ValueError(f"keys: bad entry {entry!r}; allowed: key:action with action in "
                             f"{', '.join(KEY_ACTIONS)}")
        out[key] = action
    return out


@dataclass(frozen=True)
class RecorderNodeSettings:
    """The recorder node's own parameters (RecorderConfig's are declared beside them).
    extra_topics: more topics to record, "name" (type looked up on the graph) or
        "name:package/msg/Type".
    keys: episode control keys, "key:action,..." (actions: toggle, start, stop, discard,
        success, failure, quit); foot pedals usually send pagedown / pageup or letters.
    """

    robot: str = "cobot_magic"
    task: str = ""
    note: str = ""
    record_teleop: bool = True  # the robot config's teleop topics (the action)
    extra_topics: tuple[str, ...] = ()
    keyboard: bool = True  # episode control from the terminal, when there is one
    keys: str = DEFAULT_KEYS
    autostart: bool = False  # start an episode as soon as the node is up
    status_period_s: float = 1.0

    def __post_init__(self) -> None:
        parse_key_bindings(self.keys)
        if not self.status_period_s > 0:
            raise ValueError(f"status_period_s: got {self.status_period_s!r}; allowed: > 0")
        for entry in self.extra_topics:
            if not entry.startswith("/"):
                raise ValueError(f"extra_topics: {entry!r}; allowed: '/name' or "
                                 "'/name:package/msg/Type'")


@dataclass
class RecorderStatus:
    state: str  # idle | recording
    episode: str  # bag directory name ("" when none)
    elapsed_s: float
    counts: dict[str, int]
    dropped: dict[str, int]  # queue overflow + transport gaps, per topic
    late: dict[str, int]
    bytes_written: int
    segments: int
    queued_mb: float
    last_bag: str
    error: str = ""
    episodes_kept: int = 0
    flush_ms_max: float = 0.0  # longest segment close (finish + fsync + metadata)

    def line(self, short_names: dict[str, str] | None = None) -> str:
        """One status line for a terminal."""
        if self.state != "recording":
            head = f"idle  last: {self.last_bag or '-'}  kept {self.episodes_kept}"
            return head + (f"  ERROR: {self.error}" if self.error else "")
        names = short_names or {}
        counts = " ".join(f"{names.get(t, t)}:{n}" for t, n in self.counts.items())
        dropped, late = sum(self.dropped.values()), sum(self.late.values())
        return (f"REC {self.episode}  {self.elapsed_s:6.1f} s  {counts}  "
                f"dropped {dropped}  late {late}  {self.bytes_written / 2**20:.0f} MiB  "
                f"queue {self.queued_mb:.0f} MiB" + (f"  ERROR: {self.error}" if self.error
                                                      else ""))


@dataclass
class _Episode:
    writer: EpisodeBagWriter
    start_ns: int
    counts: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    last_sequence: dict[tuple[str, bytes], int] = field(default_factory=dict)
    checked_segments: int = 0  # free space was checked after this many closed segments
    cutoff_ns: int | None = None  # stopping: wall time of the stop request
    drained: set[str] = field(default_factory=set)  # topics delivered past the cutoff


class _Command:
    def __init__(self, action: str, **kwargs: object) -> None:
        self.action, self.kwargs = action, kwargs
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class Recorder:
    def __init__(self, config: RecorderConfig, robot: str, topics: dict[str, str],
                 clock: Callable[[], int] = time.time_ns,
                 log: Callable[[str], None] = print) -> None:
        """topics: name -> message type (e.g. sensor_msgs/msg/Image), recorded when offered.
        clock: ns, the time base of the bag's timestamps (a node's clock: sim time or not)."""
        self.config = config
        self.robot = robot
        self.topics = dict(topics)
        self.clock = clock
        self.log = log
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes, int] | _Command] = queue.Queue()
        self._queued_bytes = 0
        self._episode: _Episode | None = None
        self._recording = False  # offers are accepted (set/cleared under the lock)
        self.last_bag: Path | None = None
        self.episodes_kept = 0
        self.error = ""
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="wam_recorder_writer",
                                        daemon=True)
        self._thread.start()

    # ---- control (any thread; each waits until the writer thread has done it) -------------
    def start(self, task: str = "", note: str = "") -> Path:
        """Start an episode; RecordingRefused (one clear sentence) if it cannot."""
        return self._command("start", task=task, note=note)  # type: ignore[return-value]

    def stop(self, keep: bool = True) -> Path | None:
        """Stop the episode: everything the middleware received before this call is written
        (waiting up to stop_grace_s for the executor to deliver it); keep=False deletes it."""
        if keep:
            self._drain_before_stop()
        return self._command("stop", keep=keep)  # type: ignore[return-value]

    def _drain_before_stop(self) -> None:
        with self._lock:
            ep = self._episode
            if ep is None or not self._recording:
                return
            ep.cutoff_ns = time.time_ns()
            waiting = {t for t, n in ep.counts.items() if n}
        deadline = time.monotonic() + self.config.stop_grace_s
        while time.monotonic() < deadline:
            with self._lock:
                if waiting <= ep.drained:
                    return
            time.sleep(0.01)

    def discard(self) -> Path | None:
        return self.stop(keep=False)

    def mark(self, success: bool) -> Path:
        """Success flag of the current episode, or of the last one kept."""
        return self._command("mark", success=success)  # type: ignore[return-value]

    def set_topics(self, topics: dict[str, str]) -> None:
        """Topics for the next episodes (the current one keeps its own)."""
        with self._lock:
            self.topics = dict(topics)

    @property
    def recording(self) -> bool:
        return self._recording

    def status(self) -> RecorderStatus:
        with self._lock:
            ep = self._episode
            queued = self._queued_bytes / 2**20
            if ep is None:
                return RecorderStatus("idle", "", 0.0, {}, {}, {}, 0, 0, queued,
                                      str(self.last_bag or ""), self.error, self.episodes_kept)
            return RecorderStatus(
                "recording", ep.writer.path.name, (self.clock() - ep.start_ns) * 1e-9,
                {t: ep.counts[t] for t in self.topics}, dict(ep.dropped), dict(ep.late),
                ep.writer.bytes_written, ep.writer.closed_segments, queued,
                str(self.last_bag or ""), self.error, self.episodes_kept,
                max(ep.writer.roll_seconds, default=0.0) * 1e3)

    def close(self) -> None:
        """Stop (keeping) any episode and end the writer thread."""
        if self._thread.is_alive():
            if self._recording:
                try:
                    self.stop(keep=True)
                except RuntimeError:
                    pass
            self._closing = True
            self._queue.put(_Command("exit"))
            self._thread.join(timeout=30)

    # ---- data (subscription callbacks; never blocks) -------------------------------------
    def offer(self, topic: str, data: bytes, receive_ns: int | None = None,
              publisher: bytes | None = None, sequence: int | None = None,
              received_wall_ns: int | None = None) -> bool:
        """Queue one raw message; False if not recording or dropped.
        receive_ns: the bag timestamp (default: the recorder's clock now).
        publisher, sequence: the publisher's GID and publication sequence number, when the
        middleware gives them (a gap counts the missing messages as dropped).
        received_wall_ns: when the middleware received it (system clock), which decides
        whether a message delivered during a stop still belongs to the episode."""
        with self._lock:
            ep = self._episode
            if not self._recording or ep is None or topic not in ep.writer.topics:
                return False
            if ep.cutoff_ns is not None and (received_wall_ns is None
                                             or received_wall_ns > ep.cutoff_ns):
                ep.drained.add(topic)
                return False
            if publisher is not None and sequence is not None:
                key = (topic, publisher)
                last = ep.last_sequence.get(key)
                if last is not None and sequence > last + 1:
                    ep.dropped[topic] += sequence - last - 1
                ep.last_sequence[key] = max(sequence, last or 0)
            now = self.clock() if receive_ns is None else receive_ns
            if self._queued_bytes + len(data) > self.config.queue_mb * 2**20:
                ep.dropped[topic] += 1
                return False
            stamp = header_stamp_ns(data, ep.writer.topics[topic])
            if stamp is not None and stamp > 0 and \
                    now - stamp > self.config.late_threshold_s * 1e9:
                ep.late[topic] += 1
            ep.counts[topic] += 1
            self._queued_bytes += len(data)
        self._queue.put((topic, data, now))
        return True

    # ---- the writer thread -----------------------------------------------------------
    def _command(self, action: str, **kwargs: object) -> object:
        if not self._thread.is_alive():
            raise RuntimeError("recorder closed")
        cmd = _Command(action, **kwargs)
        if action == "stop":
            with self._lock:
                self._recording = False  # nothing offered after this call is written
        self._queue.put(cmd)
        cmd.done.wait()
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    def _run(self) -> None:
        tick = min(0.05, self.config.flush_interval_s / 4)
        while True:
            try:
                item = self._queue.get(timeout=tick)
            except queue.Empty:
                item = None
            if isinstance(item, _Command):
                if item.action == "exit":
                    item.done.set()
                    return
                try:
                    item.result = getattr(self, f"_do_{item.action}")(**item.kwargs)
                except BaseException as exc:  # handed to the caller
                    item.error = exc
                item.done.set()
                continue
            if item is not None:
                topic, data, stamp = item
                with self._lock:
                    self._queued_bytes -= len(data)
                self._write(topic, data, stamp)
            self._housekeeping()

    def _write(self, topic: str, data: bytes, stamp: int) -> None:
        ep = self._episode
        if ep is None:
            return
        try:
            ep.writer.write(topic, stamp, data)
        except OSError as exc:
            self._fail(f"write failed ({exc.strerror or exc}); episode stopped, data up to "
                       "the last closed segment kept")

    def _housekeeping(self) -> None:
        ep = self._episode
        if ep is None:
            return
        try:
            ep.writer.roll_if_due()
            if ep.writer.closed_segments != ep.checked_segments:  # once per closed segment
                ep.checked_segments = ep.writer.closed_segments
                free = shutil.disk_usage(ep.writer.path).free
                if free < self.config.stop_free_mb * 2**20:
                    self.error = (f"disk nearly full ({free / 2**20:.0f} MiB free): episode "
                                  "stopped and kept")
                    self.log(self.error)
                    with self._lock:
                        self._recording = False
                    self._do_stop(keep=True)
                    return
            limit = self.config.max_episode_s
            if limit > 0 and (self.clock() - ep.start_ns) * 1e-9 >= limit:
                self.log(f"episode reached max_episode_s {limit:g}: stopped and kept")
                with self._lock:
                    self._recording = False
                self._do_stop(keep=True)
        except OSError as exc:
            self._fail(f"flush failed ({exc.strerror or exc}); episode stopped")

    def _fail(self, message: str) -> None:
        self.error = message
        self.log(message)
        ep = self._episode
        with self._lock:
            self._recording = False
            self._episode = None
        if ep is not None:
            ep.writer.abort()
            self.last_bag = ep.writer.path
        self._drain()

    def _drain(self) -> None:
        """Forget queued data (after a stop: it was offered after the stop)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Command):  # keep commands in order: put back, stop draining
                self._queue.put(item)
                return
            with self._lock:
                self._queued_bytes -= len(item[1])

    def _do_start(self, task: str, note: str) -> Path:
        if self._episode is not None:
            raise RuntimeError(f"already recording {self._episode.writer.path.name}; stop or "
                               "discard it first")
        cfg = self.config
        root = check_destination(cfg.output_dir, int(cfg.min_free_mb * 2**20))
        stamp = time.strftime("%Y%m%d_%H%M%S")
        n = sum(1 for p in root.iterdir() if p.is_dir())
        path = root / f"{self.robot}_{stamp}_{n:03d}"
        while path.exists():
            n += 1
            path = root / f"{self.robot}_{stamp}_{n:03d}"
        start_ns = self.clock()
        try:
            writer = EpisodeBagWriter(path, flush_interval_s=cfg.flush_interval_s,
                                      fsync=cfg.fsync)
            for topic, msgtype in self.topics.items():
                writer.add_topic(topic, msgtype)
            writer.set_custom(format=RECORDER_FORMAT, robot=self.robot, task=task, note=note,
                              success=None, start_time=f"{start_ns * 1e-9:.6f}", stop_time="",
                              complete=False, flush_interval_s=cfg.flush_interval_s)
            writer.write_metadata()
        except OSError as exc:
            raise RecordingRefused(f"cannot record to {path}: {exc.strerror or exc}") from exc
        self.error = ""
        with self._lock:
            self._episode = _Episode(writer, start_ns)
            self._recording = True
        self.log(f"recording {path} (task {task!r})")
        return path

    def _do_stop(self, keep: bool) -> Path | None:
        ep = self._episode
        if ep is None:
            return None
        # everything queued before the stop command has been written by now
        writer = ep.writer
        with self._lock:
            self._episode = None
        stop_ns = self.clock()
        if not keep:
            writer.abort()
            shutil.rmtree(writer.path, ignore_errors=True)
            self.log(f"discarded {writer.path.name}")
            return writer.path
        rolls = sorted(writer.roll_seconds) or [0.0]
        writer.set_custom(stop_time=f"{stop_ns * 1e-9:.6f}", complete=True,
                          dropped=sum(ep.dropped.values()), late=sum(ep.late.values()),
                          messages=sum(writer.counts.values()),
                          flush_ms_p50=f"{rolls[len(rolls) // 2] * 1e3:.1f}",
                          flush_ms_max=f"{rolls[-1] * 1e3:.1f}")
        try:
            writer.close()
        except OSError as exc:
            self._fail(f"closing {writer.path.name} failed ({exc.strerror or exc})")
            return writer.path
        self.last_bag = writer.path
        self.episodes_kept += 1
        self.log(f"kept {writer.path} ({(stop_ns - ep.start_ns) * 1e-9:.1f} s, "
                 f"{sum(writer.counts.values())} messages, {writer.closed_segments} segments, "
                 f"dropped {sum(ep.dropped.values())}, late {sum(ep.late.values())})")
        return writer.path

    def _do_mark(self, success: bool) -> Path:
        ep = self._episode
        if ep is not None:
            ep.writer.set_custom(success=success)
            ep.writer.write_metadata()
            return ep.writer.path
        if self.last_bag is None or not (self.last_bag / "metadata.yaml").is_file():
            raise RuntimeError("no episode to mark: record one first")
        update_custom_data(self.last_bag, success=success)
        self.log(f"marked {self.last_bag.name}: {'success' if success else 'failure'}")
        return self.last_bag


__all__ = ["DEFAULT_KEYS", "KEY_ACTIONS", "RECORDER_FORMAT", "Recorder", "RecorderConfig",
           "RecorderNodeSettings", "RecorderStatus", "RecordingRefused", "parse_key_bindings",
           "recorded_topics"]
