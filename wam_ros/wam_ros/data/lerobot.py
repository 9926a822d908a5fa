"""LeRobotDataset on disk, both ways: `wam-ros dataset export-lerobot` / `import-lerobot`.

Export writes LeRobotDataset v3.0 as LeRobot lays it out and encodes it (checked by LeRobot's
own reader, the `lerobot-dataset` package, in test/test_data_lerobot.py):

    OUT/meta/info.json                       codebase_version, robot_type, fps, features, paths
    OUT/meta/stats.json                      min / max / mean / std / count / q01..q99 per feature
    OUT/meta/tasks.parquet                   task (index) -> task_index
    OUT/meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its
                                             frames lie in the data and video files, its stats
    OUT/data/chunk-000/file-000.parquet      one row per frame
    OUT/videos/observation.images.<camera>/chunk-000/file-000.mp4   every episode of a camera
                                             one after the other (AV1 by default, a key frame
                                             every 2 frames, as LeRobot encodes them)
    OUT/meta/wam_ros.json                    what LeRobot has no place for (exact dt, image size,
                                             object columns, per-episode success / complete /
                                             source), so that import gives back our dataset

Features: `observation.state` and `action` (float32, names = the action layout, grippers
normalised 0..1 as in our datasets), `observation.images.<camera>` (video), optional
`observation.environment_state` (the simulator's object poses, names = our object columns) and
`stamp` (float64 seconds, our frame stamps), plus LeRobot's timestamp / frame_index /
episode_index / index / task_index. Files roll over at LeRobot's default sizes.

Import reads LeRobotDataset v3.0 and v2.1 directories (parquet + mp4, or images stored in the
parquet) into our format, mapping features to the robot's joints, grippers and cameras with a
key map (`DatasetMap`, YAML; see docs/dataset.md). Both directions write into a temporary
directory renamed onto OUT at the end: a failure leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.config import ConfigError
from wam_ros.data.atomic import atomic_directory
from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.keymap import KeyMap, SourceEpisode, resolve_indices, to_layout, write_dataset
from wam_ros.data.video import DATASET_CODECS, VideoWriter, codec_family, pick_codec

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
CHUNKS_SIZE = 1000  # files per chunk directory (LeRobot's default)
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
SIDECAR = "meta/wam_ros.json"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
IMAGE_STATS_FRAMES = 64  # frames per episode and camera sampled for image statistics
IMAGE_PREFIX = "observation.images."
STATE, ACTION, ENV_STATE, STAMP = ("observation.state", "action",
                                   "observation.environment_state", "stamp")


# ---- statistics ------------------------------------------------------------------------
def feature_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics of (N, D) values."""
    x = np.asarray(x, np.float64)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
           "count": np.array([len(x)])}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(x, q, axis=0)
    return out


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 -> per-channel statistics in [0, 1], shaped (3, 1, 1) as LeRobot's."""
    px = frames.reshape(-1, 3).astype(np.float64) / 255.0
    st = feature_stats(px)
    return {k: (v if k == "count" else v.reshape(3, 1, 1)) for k, v in st.items()} | {
        "count": np.array([len(frames)])}


def merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Statistics of the union from per-episode ones (quantiles: count-weighted means, as
    LeRobot aggregates them)."""
    n = np.array([float(p["count"][0]) for p in parts])
    w = (n / n.sum()).reshape(-1, *([1] * np.ndim(parts[0]["mean"])))
    mean = (w * np.stack([p["mean"] for p in parts])).sum(0)
    var = (w * (np.stack([p["std"] for p in parts]) ** 2
                + (np.stack([p["mean"] for p in parts]) - mean) ** 2)).sum(0)
    out = {"min": np.min([p["min"] for p in parts], 0),
           "max": np.max([p["max"] for p in parts], 0), "mean": mean,
           "std": np.sqrt(var), "count": np.array([int(n.sum())])}
    for key in parts[0]:
        if key.startswith("q"):
            out[key] = (w * np.stack([p[key] for p in parts])).sum(0)
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


# ---- export ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportOptions:
    codec: str = "auto"  # auto: LeRobot's libsvtav1 where PyAV has it, else libx264
    crf: int = 30  # LeRobot's default quality
    gop: int = 2  # LeRobot's key-frame interval

    def __post_init__(self) -> None:
        if self.codec != "auto" and self.codec not in DATASET_CODECS:
            raise ValueError(f"codec: got {self.codec!r}; allowed: auto, "
                             f"{', '.join(DATASET_CODECS)}")
        if not 0 <= self.crf <= 63:
            raise ValueError(f"crf: got {self.crf!r}; allowed: 0..63")
        if self.gop < 1:
            raise ValueError(f"gop: got {self.gop!r}; allowed: >= 1")


def _fps(dt: float) -> float | int:
    fps = 1.0 / dt
    return round(fps) if abs(fps - round(fps)) < 1e-6 else fps


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _features(info: DatasetInfo, fps: float, codec: str) -> dict[str, Any]:
    h, w = info.image_size
    names = list(info.action_layout)
    feats: dict[str, Any] = {}
    for cam in info.camera_names:
        feats[IMAGE_PREFIX + cam] = {
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": codec_family(codec),
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                     "video.fps": fps, "video.channels": 3, "has_audio": False}}
    feats[STATE] = {"dtype": "float32", "shape": [len(names)], "names": names}
    feats[ACTION] = {"dtype": "float32", "shape": [len(names)], "names": names}
    if info.objects:
        feats[ENV_STATE] = {"dtype": "float32", "shape": [len(info.objects)],
                            "names": list(info.objects)}
    feats[STAMP] = {"dtype": "float64", "shape": [1], "names": None}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"),
                       ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _tasks_table(tasks: list[str]) -> Any:
    """meta/tasks.parquet as pandas writes a DataFrame indexed by task (what LeRobot reads
    with pandas), written with pyarrow alone."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0"}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _vector_column(x: np.ndarray) -> Any:
    import pyarrow as pa

    x = np.ascontiguousarray(x, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


class _RollingVideo:
    """One camera's video files: episodes appended to the open file until it passes the size
    limit, then the next file (LeRobot's layout)."""

    def __init__(self, root: Path, key: str, fps: float, size: tuple[int, int],
                 options: ExportOptions, codec: str) -> None:
        self.root, self.key, self.fps, self.size = root, key, fps, size
        self.options, self.codec = options, codec
        self.chunk, self.file = 0, 0
        self.writer: VideoWriter | None = None

    def begin_episode(self) -> tuple[int, int, float]:
        path = self.writer.path if self.writer is not None else None
        if path is not None and path.exists() and path.stat().st_size > VIDEO_FILE_MB * 2**20:
            self.writer.close()  # type: ignore[union-attr]
            self.writer = None
            self.chunk, self.file = _next_file(self.chunk, self.file)
        if self.writer is None:
            path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk,
                                                 file_index=self.file)
            h, w = self.size
            self.writer = VideoWriter(path, self.fps, w, h, codec=self.codec,
                                      crf=self.options.crf, gop=self.options.gop)
        return self.chunk, self.file, self.writer.frames / self.fps

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def export_lerobot(src: str | Path, out: str | Path, options: ExportOptions | None = None,
                   progress: bool = False, log: Any = print) -> dict[str, Any]:
    """Our dataset at `src` -> LeRobotDataset v3.0 at `out` (which must not exist).
    Returns a summary (episodes, frames, tasks, codec, bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    options = options or ExportOptions()
    codec = pick_codec(DATASET_CODECS if options.codec == "auto" else (options.codec,))
    reader = EpisodeReader(src)
    info = reader.info
    if len(reader) == 0:
        raise ValueError(f"{src}: no episode with frames to export")
    h, w = info.image_size
    if h % 2 or w % 2:
        raise ValueError(f"{src}: image size {h}x{w}; videos (yuv420p) need even sizes")
    fps = _fps(info.dt)
    tasks: list[str] = []
    total = sum(reader.length(e) for e in range(len(reader)))
    with atomic_directory(out) as root:
        videos = {cam: _RollingVideo(root, IMAGE_PREFIX + cam, fps, (h, w), options, codec)
                  for cam in info.camera_names}
        episodes: list[dict[str, Any]] = []
        ep_stats: list[dict[str, dict[str, np.ndarray]]] = []
        data_rows: list[dict[str, Any]] = []
        data_chunk = data_file = 0
        row_bytes = 4 * (2 * info.action_dim + len(info.objects)) + 8 * 6
        index = 0
        sidecar_eps = []

        def flush_data() -> None:
            if not data_rows:
                return
            table = pa.concat_tables([pa.table(r) for r in data_rows])
            path = root / DATA_PATH.format(chunk_index=data_chunk, file_index=data_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            data_rows.clear()

        bar = tqdm(total=total, unit="frame", desc="export-lerobot", disable=not progress)
        try:
            for e in range(len(reader)):
                n = reader.length(e)
                task = reader.task(e)
                if task not in tasks:
                    tasks.append(task)
                idx = np.arange(n)
                state = reader.frames(e, "state", idx)
                action = reader.frames(e, "action", idx)
                stamp = reader.frames(e, "stamp", idx).astype(np.float64)
                if data_rows and (sum(len(r["index"]) for r in data_rows) + n) * row_bytes \
                        > DATA_FILE_MB * 2**20:
                    flush_data()
                    data_chunk, data_file = _next_file(data_chunk, data_file)
                cols: dict[str, Any] = {
                    STATE: _vector_column(state), ACTION: _vector_column(action)}
                st = {STATE: feature_stats(state), ACTION: feature_stats(action)}
                if info.objects:
                    objects = reader.frames(e, "objects", idx)
                    cols[ENV_STATE] = _vector_column(objects)
                    st[ENV_STATE] = feature_stats(objects)
                cols[STAMP] = pa.array(stamp, pa.float64())
                cols["timestamp"] = pa.array((idx / fps).astype(np.float32), pa.float32())
                cols["frame_index"] = pa.array(idx, pa.int64())
                cols["episode_index"] = pa.array(np.full(n, e), pa.int64())
                cols["index"] = pa.array(index + idx, pa.int64())
                cols["task_index"] = pa.array(np.full(n, tasks.index(task)), pa.int64())
                data_rows.append(cols)
                entry: dict[str, Any] = {
                    "episode_index": e, "tasks": [task], "length": n,
                    "data/chunk_index": data_chunk, "data/file_index": data_file,
                    "dataset_from_index": index, "dataset_to_index": index + n}
                sample = np.unique(np.linspace(0, n - 1, min(n, IMAGE_STATS_FRAMES)).astype(int))
                for cam in info.camera_names:
                    key = IMAGE_PREFIX + cam
                    chunk, file, start = videos[cam].begin_episode()
                    writer = videos[cam].writer
                    assert writer is not None
                    for first in range(0, n, 64):  # a few frames at a time: memory stays flat
                        for img in reader.frames(e, f"image.{cam}",
                                                 np.arange(first, min(n, first + 64))):
                            writer.add(img)
                    entry.update({f"videos/{key}/chunk_index": chunk,
                                  f"videos/{key}/file_index": file,
                                  f"videos/{key}/from_timestamp": start,
                                  f"videos/{key}/to_timestamp": start + n / fps})
                    st[key] = image_stats(reader.frames(e, f"image.{cam}", sample))
                for feat, s in st.items():
                    for k, v in s.items():
                        entry[f"stats/{feat}/{k}"] = np.asarray(v).tolist()
                entry["meta/episodes/chunk_index"] = 0
                entry["meta/episodes/file_index"] = 0
                episodes.append(entry)
                ep_stats.append(st)
                raw = reader.episodes[e]
                sidecar_eps.append({"episode_index": e, "name": raw["name"],
                                    "success": raw.get("success"),
                                    "complete": raw.get("complete", True),
                                    "source": raw.get("source", {})})
                index += n
                bar.update(n)
            flush_data()
        finally:
            bar.close()
            for v in videos.values():
                v.close()
            reader.close()

        stats = {f: merge_stats([s[f] for s in ep_stats]) for f in ep_stats[0]}
        ep_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(episodes), ep_path)
        pq.write_table(_tasks_table(tasks), root / "meta" / "tasks.parquet")
        (root / "meta" / "stats.json").write_text(json.dumps(_jsonable(stats), indent=1))
        doc = {"codebase_version": CODEBASE_VERSION, "robot_type": info.robot,
               "total_episodes": len(episodes), "total_frames": index,
               "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
               "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
               "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
               "data_path": DATA_PATH, "video_path": VIDEO_PATH,
               "features": _features(info, fps, codec)}
        (root / "meta" / "info.json").write_text(json.dumps(doc, indent=4))
        sidecar = {"format": "wam_ros.lerobot_export", "version": 1, "robot": info.robot,
                   "action_layout": list(info.action_layout),
                   "camera_names": list(info.camera_names),
                   "image_size": list(info.image_size), "dt": info.dt,
                   "objects": list(info.objects), "source": str(src),
                   "video": {"codec": codec, "crf": options.crf, "gop": options.gop},
                   "episodes": sidecar_eps}
        (root / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    summary = {"episodes": len(episodes), "frames": index, "tasks": len(tasks), "fps": fps,
               "codec": codec, "bytes": size, "out": str(out)}
    log(f"{len(episodes)} episodes, {index} frames, {len(tasks)} tasks -> {out} "
        f"(LeRobotDataset {CODEBASE_VERSION}, {codec}, {size / 2**20:.1f} MiB)")
    return summary


# ---- import ------------------------------------------------------------------------------
class LeRobotSource:
    """A LeRobotDataset directory (v3.0 or v2.1) read with pyarrow and PyAV."""

    def __init__(self, root: str | Path) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        path = self.root / "meta" / "info.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.root}: not a LeRobot dataset (no meta/info.json)")
        self.info = json.loads(path.read_text())
        self.version = str(self.info.get("codebase_version", ""))
        self.fps = float(self.info["fps"])
        self.features: dict[str, Any] = self.info["features"]
        self.chunks_size = int(self.info.get("chunks_size", CHUNKS_SIZE))
        side = self.root / SIDECAR
        self.sidecar: dict[str, Any] = json.loads(side.read_text()) if side.is_file() else {}
        if self.version.startswith("v3"):
            files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
            if not files:
                raise FileNotFoundError(f"{self.root}: no meta/episodes/*/*.parquet")
            cols = None
            rows: list[dict[str, Any]] = []
            for f in files:
                table = pq.read_table(f)
                cols = [c for c in table.column_names if not c.startswith("stats/")]
                rows.extend(table.select(cols).to_pylist())
            self.episodes = sorted(rows, key=lambda r: r["episode_index"])
            tasks = pq.read_table(self.root / "meta" / "tasks.parquet").to_pylist()
            key = next(k for k in ("task", "__index_level_0__") if k in tasks[0])
            self.tasks = {int(t["task_index"]): str(t[key]) for t in tasks}
        elif self.version.startswith("v2"):
            meta = self.root / "meta"
            self.episodes = [json.loads(line) for line in
                             (meta / "episodes.jsonl").read_text().splitlines() if line.strip()]
            self.episodes.sort(key=lambda r: r["episode_index"])
            self.tasks = {int(t["task_index"]): str(t["task"]) for t in (
                json.loads(line) for line in (meta / "tasks.jsonl").read_text().splitlines()
                if line.strip())}
        else:
            raise ValueError(f"{self.root}: codebase_version {self.version!r}; readable: "
                             "v2.1, v3.0")
        self._table: tuple[Path, Any] | None = None

    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    def names(self, key: str) -> list[str] | None:
        names = self.features[key].get("names")
        if isinstance(names, dict):  # older datasets: {"motors": [...]}
            names = next(iter(names.values()), None)
        return [str(n) for n in names] if isinstance(names, list) else None

    def image_size(self, key: str) -> tuple[int, int]:
        f = self.features[key]
        shape, names = list(f["shape"]), f.get("names") or []
        if names and names[0] in ("channel", "channels"):  # (C, H, W)
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])

    def _data_path(self, ep: dict[str, Any]) -> Path:
        e = int(ep["episode_index"])
        if self.version.startswith("v3"):
            return self.root / self.info["data_path"].format(
                chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
        return self.root / self.info["data_path"].format(
            episode_chunk=e // self.chunks_size, episode_index=e)

    def episode_table(self, ep: dict[str, Any]) -> Any:
        """The episode's frames (a pyarrow Table sorted by frame_index)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = self._data_path(ep)
        if self._table is None or self._table[0] != path:
            self._table = (path, pq.read_table(path))
        table = self._table[1]
        table = table.filter(pc.equal(table["episode_index"], int(ep["episode_index"])))
        return table.sort_by("frame_index")

    def video_frames(self, ep: dict[str, Any], key: str, n: int) -> Iterator[np.ndarray]:
        """The episode's n frames of video `key`, found by timestamp."""
        import av

        e = int(ep["episode_index"])
        if self.version.startswith("v3"):
            path = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                file_index=ep[f"videos/{key}/file_index"])
            start = float(ep[f"videos/{key}/from_timestamp"])
        else:
            path = self.root / self.info["video_path"].format(
                episode_chunk=e // self.chunks_size, video_key=key, episode_index=e)
            start = 0.0
        if not path.is_file():
            raise FileNotFoundError(f"{path}: video of {key}, episode {e} missing")
        got = 0
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                k = round((float(frame.pts * frame.time_base) - start) * self.fps)
                if k < got:
                    continue
                if k > got:
                    raise ValueError(f"{path}: frame {got} of episode {e} ({key}) missing "
                                     f"(next one has timestamp {start + k / self.fps:.4f} s)")
                yield frame.to_ndarray(format="rgb24")
                got += 1
                if got == n:
                    return
        raise ValueError(f"{path}: {got} frames of episode {e} ({key}), expected {n}")

    def image_column_frames(self, table: Any, key: str) -> Iterator[np.ndarray]:
        import cv2

        for cell in table[key].to_pylist():
            data = cell["bytes"] if isinstance(cell, dict) else cell
            if data is None and isinstance(cell, dict) and cell.get("path"):
                data = (self.root / cell["path"]).read_bytes()
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{self.root}: an image of {key} does not decode")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def lerobot_default_map(src: LeRobotSource, cameras: tuple[str, ...]) -> KeyMap:
    """What a LeRobot dataset most likely means: observation.state / action, cameras by
    name (`observation.images.<camera>`), our stamp and object poses where our export wrote
    them, grippers as they are (already 0..1)."""
    cams = {c: IMAGE_PREFIX + c for c in cameras if IMAGE_PREFIX + c in src.features}
    objects = ENV_STATE if ENV_STATE in src.features and src.names(ENV_STATE) else ""
    return KeyMap(cameras=cams, objects=objects, stamp=STAMP if STAMP in src.features else "")


def import_lerobot(src_dir: str | Path, out: str | Path, robot: Any,
                   keymap_path: str | Path | None = None,
                   image_size: tuple[int, int] | None = None,
                   resize_mode: str = "center_crop", progress: bool = False,
                   log: Any = print) -> dict[str, Any]:
    """A LeRobotDataset (v3.0 / v2.1) directory -> our dataset at `out` for `robot`
    (a RobotSpec). Returns a summary."""
    from tqdm import tqdm

    src = LeRobotSource(src_dir)
    keymap = KeyMap.load(keymap_path, lerobot_default_map(src, robot.camera_names))
    layout = tuple(robot.action_layout)
    for key in (keymap.state, keymap.action):
        if key not in src.features:
            raise ConfigError(f"{src_dir}: no feature {key!r} (features: "
                              f"{', '.join(src.features)}); map it with --map")
    missing = [c for c in robot.camera_names if c not in keymap.cameras]
    if missing:
        raise ConfigError(f"{src_dir}: cameras {missing} of {robot.name} have no source; "
                          f"image features: {src.image_keys()}; map them with --map cameras")
    for cam, key in keymap.cameras.items():
        if key not in src.features:
            raise ConfigError(f"key map: cameras.{cam}: {key!r} is not a feature of {src_dir} "
                              f"(image features: {src.image_keys()})")
    idx = {k: resolve_indices(layout, keymap, src.names(k), int(src.features[k]["shape"][0]), k)
           for k in (keymap.state, keymap.action)}
    objects = tuple(src.names(keymap.objects) or ()) if keymap.objects else ()
    side = src.sidecar
    if image_size is None:
        if side.get("image_size"):
            image_size = (int(side["image_size"][0]), int(side["image_size"][1]))
        else:
            sizes = {src.image_size(keymap.cameras[c]) for c in robot.camera_names}
            if len(sizes) != 1:
                raise ConfigError(f"{src_dir}: cameras have sizes {sorted(sizes)}; choose one "
                                  "with --image-size")
            image_size = sizes.pop()
    dt = float(side["dt"]) if side.get("dt") and abs(float(side["dt"]) * src.fps - 1) < 1e-6 \
        else 1.0 / src.fps
    info = DatasetInfo(robot.name, layout, tuple(robot.camera_names), tuple(image_size), dt,
                       objects)
    extra = {int(e["episode_index"]): e for e in side.get("episodes", [])}

    def episodes() -> Iterator[SourceEpisode]:
        for ep in src.episodes:
            e = int(ep["episode_index"])
            table = src.episode_table(ep)
            n = table.num_rows
            if n == 0:
                continue
            vec = {k: np.asarray(table[k].to_pylist(), np.float64) for k in idx}
            state = to_layout(vec[keymap.state], idx[keymap.state], layout, keymap)
            action = to_layout(vec[keymap.action], idx[keymap.action], layout, keymap)
            if keymap.stamp:
                stamp = np.asarray(table[keymap.stamp].to_pylist(), np.float64).reshape(n)
            else:
                stamp = np.asarray(table["timestamp"].to_pylist(), np.float64).reshape(n)
            obj = (np.asarray(table[keymap.objects].to_pylist(), np.float32)
                   if objects else None)
            task = keymap.task or src.tasks.get(int(table["task_index"][0].as_py()), "")
            more = extra.get(e, {})
            # our own export: the episode's original record; else where it came from
            source = dict(more["source"] if "source" in more else
                          {"lerobot": str(src_dir), "episode_index": e})

            def images(ep: dict[str, Any] = ep, table: Any = table,
                       n: int = n) -> Iterator[dict[str, np.ndarray]]:
                streams = {}
                for cam in robot.camera_names:
                    key = keymap.cameras[cam]
                    if src.features[key]["dtype"] == "video":
                        streams[cam] = src.video_frames(ep, key, n)
                    else:
                        streams[cam] = src.image_column_frames(table, key)
                for frames in zip(*streams.values()):
                    yield dict(zip(streams, frames))

            yield SourceEpisode(task, state, action, stamp, images, obj,
                                success=more.get("success"),
                                complete=bool(more.get("complete", True)), source=source)

    total = sum(int(e.get("length", 0)) for e in src.episodes)
    with tqdm(total=total, unit="frame", desc="import-lerobot", disable=not progress) as bar:
        summary = write_dataset(out, info, episodes(), resize_mode, bar)
    log(f"{summary['episodes']} episodes, {summary['frames']} frames from LeRobot "
        f"{src.version} {src_dir} -> {out} ({robot.name}, images {image_size[0]}x"
        f"{image_size[1]})")
    return summary


__all__ = ["CODEBASE_VERSION", "ExportOptions", "LeRobotSource", "export_lerobot",
           "feature_stats", "image_stats", "import_lerobot", "lerobot_default_map",
           "merge_stats"]
