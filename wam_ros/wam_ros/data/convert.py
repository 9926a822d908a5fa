"""Episode bags -> training dataset (data/dataset.py format): `wam-ros dataset build`.

Per bag (one episode):
1. Pass 1 reads the joint states and the teleop (leader / command) messages in full and only
   the header stamps of the images (no pixels decoded).
2. A time grid at the robot's action rate (dt = 1 / action_rate_hz) covers the span where every
   stream has data. At each frame time t:
     state  = follower joints linearly interpolated at t (grippers normalised 0..1)
     action = the teleop command at t: each leader's values interpolated at t, mapped by the
              robot config's teleop section (scale; `space: delta` adds the follower state), in
              the limits. Bags without teleop topics (a policy rollout) fall back to
              action[t] = state[t + 1] (where the robot went).
     images = per camera the newest frame stamped at or before t (+ 5 ms slop), resized to
              the model's input (centre crop by default, as the observation node does)
3. Pass 2 streams the images, decodes only the frames the grid uses and writes frames in order,
   so memory stays at a few frames per camera whatever the episode length.

Times are header stamps (bag receive times when a stamp is zero). Each episode gets a summary:
frames, seconds, measured rate and gaps per topic, dropped / late counts from the recorder,
whether the bag was complete (a killed recorder leaves complete: false).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.image import RESIZE_MODES, message_to_rgb, prepare_image
from wam_ros.core.robot import RobotSpec
from wam_ros.data.bag_reader import Bag, open_bag
from wam_ros.data.cdr import deserialize, header_stamp_ns
from wam_ros.data.dataset import IMAGE_FORMATS, DatasetInfo
from wam_ros.data.dataset_writer import DatasetWriter
from wam_ros.data.follower import FollowerStates, message_values
from wam_ros.data.teleop import LeaderMap

ACTION_SOURCES = ("auto", "teleop", "follower")
IMAGE_SLOP_NS = 5_000_000


@dataclass(frozen=True)
class BuildOptions:
    robot: str = ""  # empty: the bag's custom_data robot
    image_size: tuple[int, int] = (224, 224)  # (H, W) stored = the model's input
    resize_mode: str = "center_crop"
    rate_hz: float = 0.0  # 0: the robot's action_rate_hz
    action_source: str = "auto"
    task: str = ""  # empty: the bag's task
    include_partial: bool = True  # also the unfinished segment of a killed recorder
    skip_incomplete: bool = False
    only_success: bool = False
    gap_factor: float = 2.5  # an interval > gap_factor x the median period is a gap
    image_format: str = "raw"  # raw | jpeg (dataset.IMAGE_FORMATS)

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode: got {self.resize_mode!r}; allowed: "
                             f"{', '.join(RESIZE_MODES)}")
        if self.action_source not in ACTION_SOURCES:
            raise ValueError(f"action_source: got {self.action_source!r}; allowed: "
                             f"{', '.join(ACTION_SOURCES)}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"image_size: got {self.image_size!r}; allowed: (H, W) >= 8")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format: got {self.image_format!r}; allowed: "
                             f"{', '.join(IMAGE_FORMATS)}")
        if self.rate_hz < 0:
            raise ValueError(f"rate_hz: got {self.rate_hz!r}; allowed: >= 0")


@dataclass
class StreamStats:
    messages: int
    rate_hz: float
    gaps: int  # intervals longer than gap_factor x the median period
    max_gap_s: float


@dataclass
class EpisodeSummary:
    bag: str
    episode: str = ""  # dataset episode name ("" when skipped)
    task: str = ""
    frames: int = 0
    duration_s: float = 0.0
    action_source: str = ""
    complete: bool | None = None
    success: bool | None = None
    dropped: int = 0
    late: int = 0
    partial_messages: int = 0
    bad_images: int = 0  # frames that did not decode (the camera's previous frame was used)
    bad_image_error: str = ""
    streams: dict[str, StreamStats] = field(default_factory=dict)
    skipped: str = ""  # why the bag was not converted

    def line(self) -> str:
        if self.skipped:
            return f"{Path(self.bag).name}: skipped ({self.skipped})"
        worst = max(self.streams.values(), key=lambda s: s.max_gap_s, default=None)
        gaps = sum(s.gaps for s in self.streams.values())
        rates = " ".join(f"{_short(t)} {s.rate_hz:.1f}Hz" for t, s in self.streams.items())
        return (f"{Path(self.bag).name} -> {self.episode}: {self.frames} frames "
                f"{self.duration_s:.1f} s, action {self.action_source}, {rates}; gaps {gaps}"
                + (f" (max {worst.max_gap_s * 1e3:.0f} ms)" if worst and gaps else "")
                + f", dropped {self.dropped}, late {self.late}"
                + ("" if self.complete else ", INCOMPLETE (recorder stopped abruptly)")
                + f", success {self.success}")


def robot_from_topics(topics: Iterable[str]) -> str:
    """A bag without our metadata (`ros2 bag record`): the one robot config whose cameras and
    follower joint states are all in it, else ""."""
    from wam_ros.core.robot import available_robots

    present = set(topics)
    found = []
    for name in available_robots():
        try:
            spec = RobotSpec.load(name)
        except Exception:  # a broken config is reported where it is used
            continue
        if len(camera_topics(spec, present)) == len(spec.cameras) and \
                FollowerStates(spec, present).topics:
            found.append(name)
    return found[0] if len(found) == 1 else ""


def _short(topic: str) -> str:
    parts = [p for p in topic.split("/") if p and p not in ("image_raw", "color", "compressed")]
    return parts[-1] if parts else topic


def _flag(text: str | None) -> bool | None:
    return {"true": True, "false": False}.get((text or "").lower())


def find_bags(paths: Iterable[str | Path]) -> list[Path]:
    """Bag directories / files; a directory of bags (the recorder's output) expands to them."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such bag or directory")
        is_bag = p.is_file() or (p / "metadata.yaml").is_file() or any(
            q.suffix in (".mcap", ".db3") or q.name.endswith(".partial") for q in p.iterdir())
        if is_bag:
            out.append(p)
            continue
        subs = sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
        if not subs:
            raise FileNotFoundError(f"{p}: neither a bag nor a directory of bags")
        out.extend(find_bags(subs))
    return out


def stream_stats(stamps: np.ndarray, gap_factor: float) -> StreamStats:
    if len(stamps) < 2:
        return StreamStats(len(stamps), 0.0, 0, 0.0)
    dt = np.diff(np.sort(stamps))
    span = float(stamps.max() - stamps.min())
    period = float(np.median(dt))
    gaps = dt[dt > gap_factor * period] if period > 0 else dt[:0]
    return StreamStats(len(stamps), (len(stamps) - 1) / span if span > 0 else 0.0,
                       int(gaps.size), float(dt.max()))


def _interp(t: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(T,) query times, (N,) sorted sample times, (N, D) values -> (T, D); held at the ends."""
    return np.stack([np.interp(t, times, values[:, j]) for j in range(values.shape[1])], 1)


@dataclass
class _Streams:
    follower_t: np.ndarray
    follower_q: np.ndarray  # (N, D) joint units, action layout
    leaders: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (times, values)
    images: dict[str, tuple[np.ndarray, np.ndarray]]  # camera -> (stamps, bag-order index)
    stamps: dict[str, np.ndarray]  # topic -> stamps, for the summary


def camera_topics(spec: RobotSpec, bag_topics: Iterable[str]) -> dict[str, str]:
    """camera name -> topic in the bag (CompressedImage topics may carry /compressed)."""
    present = set(bag_topics)
    out = {}
    for cam in spec.cameras:
        for topic in (cam.topic, cam.topic.rstrip("/") + "/compressed"):
            if topic in present:
                out[cam.name] = topic
                break
    return out


def _read_streams(bag: Bag, spec: RobotSpec, cams: dict[str, str],
                  leader_map: LeaderMap | None) -> _Streams:
    layout = list(spec.action_layout)
    cam_of = {t: c for c, t in cams.items()}
    sources = {s.topic: s for s in leader_map.sources} if leader_map else {}
    ft: list[float] = []
    fq: list[np.ndarray] = []
    leaders: dict[str, tuple[list[float], list[np.ndarray]]] = {}
    images: dict[str, list[tuple[float, int]]] = {c: [] for c in cams}
    stamps: dict[str, list[float]] = {}
    counters = {t: 0 for t in cam_of}
    follower = FollowerStates(spec, bag.topics)
    wanted = set(cam_of) | set(sources) | follower.topics
    for m in bag.messages(wanted):
        stamp = header_stamp_ns(m.data, m.msgtype) or m.timestamp
        t = stamp * 1e-9
        stamps.setdefault(m.topic, []).append(t)
        if m.topic in cam_of:
            images[cam_of[m.topic]].append((t, counters[m.topic]))
            counters[m.topic] += 1
        elif m.topic in follower.topics:
            q = follower.update(m.topic, deserialize(m.data, m.msgtype))
            if q is not None:
                ft.append(t)
                fq.append(q)
        elif m.topic in sources:
            src = sources[m.topic]
            v = message_values(src, deserialize(m.data, m.msgtype))
            if v is not None:
                lt, lv = leaders.setdefault(src.name, ([], []))
                lt.append(t)
                lv.append(v)
    order = np.argsort(ft, kind="stable")
    return _Streams(
        np.asarray(ft)[order], np.asarray(fq).reshape(-1, len(layout))[order],
        {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in leaders.items()},
        {c: (np.array([s for s, _ in v]), np.array([i for _, i in v], np.int64))
         for c, v in images.items()},
        {k: np.asarray(v) for k, v in stamps.items()})


def convert_bag(bag_path: str | Path, writer_factory: Callable[[RobotSpec], DatasetWriter],
                options: BuildOptions, progress: Any = None) -> EpisodeSummary:
    """One bag -> one dataset episode (through the writer the factory returns)."""
    bag = open_bag(bag_path, include_partial=options.include_partial)
    summary = EpisodeSummary(str(bag_path), partial_messages=bag.partial_messages)
    custom = bag.custom
    summary.complete = _flag(custom.get("complete")) if custom else None
    summary.success = _flag(custom.get("success"))
    summary.dropped = int(custom.get("dropped") or 0)
    summary.late = int(custom.get("late") or 0)
    robot = options.robot or custom.get("robot", "") or robot_from_topics(bag.topics)
    if not robot:
        summary.skipped = "no robot: pass --robot (the bag's metadata does not name one)"
        return summary
    if options.skip_incomplete and summary.complete is False:
        summary.skipped = "incomplete (the recorder stopped abruptly)"
        return summary
    if options.only_success and summary.success is not True:
        summary.skipped = f"success is {summary.success}"
        return summary
    spec = RobotSpec.load(robot)
    cams = camera_topics(spec, bag.topics)
    missing = [c.name for c in spec.cameras if c.name not in cams]
    if missing:
        summary.skipped = f"cameras {missing} not in the bag (topics: {sorted(bag.topics)})"
        return summary
    if not FollowerStates(spec, bag.topics).topics:
        summary.skipped = (f"no follower joint states on {spec.joint_state_topic} (nor AgileX's "
                           "/puppet/joint_left|right)")
        return summary
    leader_map = LeaderMap(spec) if spec.teleop is not None else None
    has_teleop = leader_map is not None and all(s.topic in bag.topics
                                                for s in leader_map.sources)
    source = options.action_source
    if source == "auto":
        source = "teleop" if has_teleop else "follower"
    if source == "teleop" and not has_teleop:
        summary.skipped = "no teleop topics in the bag (use --action-source follower)"
        return summary
    summary.action_source = source
    streams = _read_streams(bag, spec, cams, leader_map if source == "teleop" else None)
    summary.streams = {t: stream_stats(s, options.gap_factor) for t, s in streams.stamps.items()}

    starts = [streams.follower_t[0] if len(streams.follower_t) else np.inf]
    ends = [streams.follower_t[-1] if len(streams.follower_t) else -np.inf]
    for stamps, _ in streams.images.values():
        starts.append(stamps.min() if len(stamps) else np.inf)
        ends.append(stamps.max() if len(stamps) else -np.inf)
    if source == "teleop":
        for s in leader_map.sources:  # type: ignore[union-attr]
            t, _ = streams.leaders.get(s.name, (np.zeros(0), None))
            starts.append(t[0] if len(t) else np.inf)
            ends.append(t[-1] if len(t) else -np.inf)
    dt = 1.0 / (options.rate_hz or spec.action_rate_hz)
    t0, t1 = max(starts), min(ends)
    if not np.isfinite(t0) or not np.isfinite(t1) or t1 - t0 < dt:
        summary.skipped = "fewer than two frames where every stream has data"
        return summary
    times = t0 + dt * np.arange(int(np.floor((t1 - t0) / dt)) + 1)  # (T,)
    state = spec.joint_to_action(_interp(times, streams.follower_t, streams.follower_q))
    if source == "teleop":
        values = {name: _interp(times, t, v) for name, (t, v) in streams.leaders.items()}
        action = np.stack([leader_map.to_action({k: v[i] for k, v in values.items()},  # type: ignore[union-attr]
                                                state[i]) for i in range(len(times))])
        action = leader_map.clip(action)  # type: ignore[union-attr]
    else:
        action = np.concatenate([state[1:], state[-1:]])
    need: dict[str, np.ndarray] = {}
    for cam, (stamps, bag_index) in streams.images.items():
        order = np.argsort(stamps, kind="stable")
        pick = np.searchsorted(stamps[order], times + IMAGE_SLOP_NS * 1e-9,
                               side="right") - 1
        need[cam] = bag_index[order][np.clip(pick, 0, len(order) - 1)]

    task = options.task or custom.get("task", "") or ""
    writer = writer_factory(spec)
    ep = writer.new_episode(task)
    summary.episode, summary.task = ep.entry["name"], task
    h, w = options.image_size
    last_use = {c: {int(i): k for k, i in enumerate(v)} for c, v in need.items()}
    decoded: dict[str, dict[int, np.ndarray]] = {c: {} for c in cams}
    last_good: dict[str, np.ndarray] = {}
    seen = {c: 0 for c in cams}
    cam_of = {t: c for c, t in cams.items()}
    k = 0
    for m in bag.messages(set(cam_of)):
        cam = cam_of[m.topic]
        i = seen[cam]
        seen[cam] += 1
        if progress is not None:
            progress.update(1)
        if i in last_use[cam]:
            try:
                rgb = message_to_rgb(deserialize(m.data, m.msgtype))
                img = prepare_image(rgb, h, w, options.resize_mode)
            except Exception as exc:  # any undecodable frame: hold the camera's last good one
                summary.bad_images += 1
                summary.bad_image_error = str(exc)
                img = last_good.get(cam, np.zeros((h, w, 3), np.uint8))
            decoded[cam][i] = last_good[cam] = img
        while k < len(times) and all(int(need[c][k]) in decoded[c] for c in cams):
            ep.add(float(times[k]), {c: decoded[c][int(need[c][k])] for c in cams},
                   state[k].astype(np.float32), action[k].astype(np.float32))
            for c in cams:  # frames no later frame uses
                j = int(need[c][k])
                if last_use[c][j] == k:
                    del decoded[c][j]
            k += 1
    ep.close(success=summary.success)
    summary.frames = k
    summary.duration_s = float(k * dt)
    return summary


def build_dataset(bags: Iterable[str | Path], out: str | Path, options: BuildOptions,
                  progress: bool = True, log: Callable[[str], None] = print
                  ) -> list[EpisodeSummary]:
    """Convert every bag (or directory of bags) into one dataset at `out` (created or appended
    to: same robot, cameras and image size)."""
    from tqdm import tqdm

    paths = find_bags(bags)
    writer: list[DatasetWriter] = []

    def factory(spec: RobotSpec) -> DatasetWriter:
        if not writer:
            info = DatasetInfo(spec.name, tuple(spec.action_layout), tuple(spec.camera_names),
                               tuple(options.image_size),
                               1.0 / (options.rate_hz or spec.action_rate_hz),
                               image_format=options.image_format)
            writer.append(DatasetWriter(out, info))
        elif writer[0].info.robot != spec.name:
            raise ValueError(f"bags of robots {writer[0].info.robot} and {spec.name} cannot "
                             "share one dataset")
        return writer[0]

    total = 0
    for p in paths:
        try:
            b = open_bag(p, include_partial=options.include_partial)
            total += sum(n for t, n in b.counts.items() if "image" in b.topics[t].lower())
        except Exception:  # reported when converting
            pass
    summaries = []
    t_start = time.perf_counter()
    with tqdm(total=total, unit="img", desc="dataset build", disable=not progress,
              file=sys.stderr) as bar:
        for p in paths:
            bar.set_postfix_str(Path(p).name)
            try:
                s = convert_bag(p, factory, options, bar)
            except (ValueError, KeyError, OSError) as exc:
                s = EpisodeSummary(str(p), skipped=f"{type(exc).__name__}: {exc}")
            summaries.append(s)
            bar.write(s.line())
    elapsed = time.perf_counter() - t_start
    kept = [s for s in summaries if not s.skipped]
    frames = sum(s.frames for s in kept)
    log(f"{len(kept)} of {len(summaries)} episodes, {frames} frames "
        f"({sum(s.duration_s for s in kept):.1f} s of robot time) -> {out} in {elapsed:.1f} s")
    return summaries


def summaries_json(summaries: list[EpisodeSummary]) -> str:
    return json.dumps([asdict(s) for s in summaries], indent=1)


__all__ = ["ACTION_SOURCES", "BuildOptions", "EpisodeSummary", "build_dataset", "camera_topics",
           "convert_bag", "find_bags", "stream_stats", "summaries_json"]
