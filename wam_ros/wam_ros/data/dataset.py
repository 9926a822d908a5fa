"""Episode dataset: the format the recorder / bag converter / scripted expert write, a writer,
a reader and the torch Dataset the trainer samples windows from. ROS-free, no pickle.

Layout (see docs/dataset.md for the full description):

    ROOT/index.json                          dataset header + one entry per episode
    ROOT/episodes/<name>/part_0000.safetensors  frames [0, n0), part_0001 [n0, n0+n1), ...

Each part holds, for its n frames (one frame per action step, dt = index["dt"]):
    image.<camera>  (n, H, W, 3) uint8 RGB at model resolution (index["image_size"])
    state           (n, D) float32 joint positions at the frame, action layout, grippers 0..1
    action          (n, D) float32 absolute commanded positions, same units as state
    stamp           (n,)   float64 seconds
    objects         (n, K) float32 optional: the scene's object poses where the data comes from
                    a simulator (privileged; index["objects"] names the K columns)
The writer flushes a part every `part_frames` frames and rewrites index.json atomically after
each flush, so an episode cut short (killed recorder) stays readable up to its last part.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

FORMAT = "wam_ros.episodes"
VERSION = 1
IMAGE_FORMATS = ("raw", "jpeg")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class DatasetInfo:
    robot: str
    action_layout: tuple[str, ...]
    camera_names: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W)
    dt: float
    # columns of the optional per-frame `objects` tensor (e.g. "cube.x"); empty: not recorded
    objects: tuple[str, ...] = ()
    # how images are stored: raw uint8 rows, or one JPEG per frame (random access kept)
    image_format: str = "raw"

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format: got {self.image_format!r}; allowed: "
                             f"{', '.join(IMAGE_FORMATS)}")

    @property
    def action_dim(self) -> int:
        return len(self.action_layout)


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def _read_index(root: Path) -> dict[str, Any]:
    path = root / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root}: not an episode dataset (no index.json)")
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{path}: format/version {doc.get('format')!r}/{doc.get('version')!r};"
                         f" expected {FORMAT!r}/{VERSION}")
    return doc


class DatasetWriter:
    """Creates (or appends to) a dataset; one EpisodeWriter at a time."""

    def __init__(self, root: str | Path, info: DatasetInfo, part_frames: int = 200,
                 jpeg_quality: int = JPEG_QUALITY) -> None:
        self.root = Path(root)
        self.info = info
        self.part_frames = part_frames
        self.jpeg_quality = jpeg_quality
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        if (self.root / "index.json").is_file():
            self.index = _read_index(self.root)
            old = (self.index["robot"], tuple(self.index["action_layout"]),
                   tuple(self.index["camera_names"]), tuple(self.index["image_size"]))
            new = (info.robot, info.action_layout, info.camera_names, tuple(info.image_size))
            if old != new:
                raise ValueError(f"{self.root}: existing dataset has robot/layout/cameras/size "
                                 f"{old}, cannot append {new}")
            if self.index.get("image_format", "raw") != info.image_format:
                raise ValueError(f"{self.root}: existing dataset stores images as "
                                 f"{self.index.get('image_format', 'raw')}, cannot append "
                                 f"{info.image_format}")
            if tuple(self.index.get("objects", ())) != tuple(info.objects):
                raise ValueError(f"{self.root}: existing dataset records objects "
                                 f"{self.index.get('objects', [])}, cannot append "
                                 f"{list(info.objects)}")
        else:
            self.index = {"format": FORMAT, "version": VERSION, "robot": info.robot,
                          "action_layout": list(info.action_layout),
                          "camera_names": list(info.camera_names),
                          "image_size": list(info.image_size), "dt": info.dt, "episodes": []}
            if info.objects:
                self.index["objects"] = list(info.objects)
            if info.image_format != "raw":
                self.index["image_format"] = info.image_format
            self._save_index()

    def _save_index(self) -> None:
        _write_json_atomic(self.root / "index.json", self.index)

    def new_episode(self, task: str, source: dict[str, Any] | None = None) -> EpisodeWriter:
        """A new episode; `source` (JSON values) records where it came from in the index."""
        name = f"ep_{len(self.index['episodes']):06d}"
        entry = {"name": name, "task": task, "length": 0, "parts": [], "complete": False,
                 "success": None}
        if source:
            entry["source"] = dict(source)
        self.index["episodes"].append(entry)
        self._save_index()
        return EpisodeWriter(self, entry)


class EpisodeWriter:
    def __init__(self, owner: DatasetWriter, entry: dict[str, Any]) -> None:
        self.owner, self.entry = owner, entry
        self.dir = owner.root / "episodes" / entry["name"]
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buf: dict[str, list[np.ndarray]] = {}
        self._closed = False

    def add(self, stamp: float, images: dict[str, np.ndarray], state: np.ndarray,
            action: np.ndarray, objects: np.ndarray | None = None) -> None:
        """One frame. state / action: (D,) action layout, grippers normalised 0..1;
        objects: (K,) the columns DatasetInfo.objects names (required when it names any)."""
        if self._closed:
            raise RuntimeError("episode already closed")
        info = self.owner.info
        h, w = info.image_size
        # every field is checked before any is buffered: a refused frame leaves nothing behind
        row: dict[str, np.ndarray] = {}
        for cam in info.camera_names:
            img = images.get(cam)
            if img is None or img.shape != (h, w, 3) or img.dtype != np.uint8:
                got = None if img is None else (img.shape, img.dtype)
                raise ValueError(f"camera {cam!r}: expected ({h}, {w}, 3) uint8, got {got}")
            row[f"image.{cam}"] = img
        for key, raw in (("state", state), ("action", action)):
            vec = np.asarray(raw, np.float32)
            if vec.shape != (info.action_dim,) or not np.all(np.isfinite(vec)):
                raise ValueError(f"{key}: expected ({info.action_dim},) finite values, got "
                                 f"{vec.shape}")
            row[key] = vec
        if info.objects or objects is not None:
            vec = np.asarray(objects if objects is not None else (), np.float32)
            if vec.shape != (len(info.objects),) or not np.all(np.isfinite(vec)):
                raise ValueError(f"objects: expected ({len(info.objects)},) finite values "
                                 f"({', '.join(info.objects) or 'none declared'}), got "
                                 f"{vec.shape}")
            row["objects"] = vec
        for key, value in row.items():
            self._buf.setdefault(key, []).append(value)
        self._buf.setdefault("stamp", []).append(np.float64(stamp))
        if len(self._buf["stamp"]) >= self.owner.part_frames:
            self.flush()

    def flush(self) -> None:
        n = len(self._buf.get("stamp", []))
        if n == 0:
            return
        name = f"part_{len(self.entry['parts']):04d}.safetensors"
        if self.owner.info.image_format == "jpeg":
            self._buf = self._buf | self._encode_jpeg()
        tensors = {k: np.ascontiguousarray(np.stack(v) if k.split(".")[0] not in JPEG_KEYS
                                           else v[0]) for k, v in self._buf.items()}
        tmp = self.dir / (name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, self.dir / name)
        self.entry["parts"].append([name, n])
        self.entry["length"] += n
        self._buf = {}
        self.owner._save_index()

    def _encode_jpeg(self) -> dict[str, list[np.ndarray]]:
        """image.<cam> rows -> jpeg.<cam> (the JPEGs one after the other, uint8) and
        jpeg_offsets.<cam> ((n + 1,) int64: frame i is bytes [offsets[i], offsets[i + 1]))."""
        import cv2

        out: dict[str, list[np.ndarray]] = {}
        for cam in self.owner.info.camera_names:
            encoded = []
            for img in self._buf.pop(f"image.{cam}"):
                # full-resolution colour (4:4:4): at model resolution (96 px) the default
                # 4:2:0 doubled the pixel error (2.1 against 1.0 / 255 on simulated G1
                # frames at quality 95) for 20 % fewer bytes
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.owner.jpeg_quality,
                                        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
                if not ok:
                    raise ValueError(f"camera {cam!r}: JPEG encoding failed")
                encoded.append(buf.reshape(-1))
            offsets = np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)
            out[f"jpeg.{cam}"] = [np.concatenate(encoded)]
            out[f"jpeg_offsets.{cam}"] = [offsets]
        return out

    def close(self, success: bool | None = None, complete: bool = True) -> None:
        """complete=False keeps the mark of an episode cut short (an import of one)."""
        if self._closed:
            return
        self.flush()
        self.entry["complete"] = complete
        self.entry["success"] = success
        self._closed = True
        self.owner._save_index()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EpisodeReader:
    """Random access to frames of every episode (exact positioned reads: PartRows)."""

    def __init__(self, root: str | Path, min_length: int = 1) -> None:
        self.root = Path(root)
        doc = _read_index(self.root)
        self.info = DatasetInfo(doc["robot"], tuple(doc["action_layout"]),
                                tuple(doc["camera_names"]), tuple(doc["image_size"]),
                                float(doc["dt"]), tuple(doc.get("objects", ())),
                                doc.get("image_format", "raw"))
        self.episodes = [e for e in doc["episodes"] if e["length"] >= min_length]
        self._handles: dict[Path, Any] = {}

    def __len__(self) -> int:
        return len(self.episodes)

    def length(self, ep: int) -> int:
        return int(self.episodes[ep]["length"])

    def task(self, ep: int) -> str:
        return str(self.episodes[ep]["task"])

    def source(self, ep: int) -> dict[str, Any]:
        """Where the episode came from, as its writer recorded it ({} if it did not)."""
        return dict(self.episodes[ep].get("source", {}))

    def _handle(self, path: Path) -> PartRows:
        if path not in self._handles:  # opened lazily: handles are per process
            if len(self._handles) >= MAX_OPEN_PARTS:
                self._handles.pop(next(iter(self._handles))).close()
            self._handles[path] = PartRows(path)
        return self._handles[path]

    def frames(self, ep: int, key: str, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` (sorted or not) of tensor `key` across the episode's parts."""
        entry = self.episodes[ep]
        idx = np.asarray(idx, np.int64)
        starts = np.cumsum([0] + [n for _, n in entry["parts"]])
        part = np.searchsorted(starts, idx, side="right") - 1
        # runs of consecutive rows within one part: one read each
        breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(part) != 0)) + 1
        out = []
        for first, count in zip(np.r_[0, breaks], np.diff(np.r_[0, breaks, idx.size])):
            name = entry["parts"][int(part[first])][0]
            h = self._handle(self.root / "episodes" / entry["name"] / name)
            start = int(idx[first] - starts[part[first]])
            if self.info.image_format == "jpeg" and key.startswith("image."):
                out.append(h.jpeg_rows(key[len("image."):], start, int(count)))
            else:
                out.append(h.rows(key, start, int(count)))
        return np.concatenate(out)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()

    def episode(self, ep: int) -> dict[str, np.ndarray]:
        """All frames of an episode (small datasets, tests)."""
        n = self.length(ep)
        keys = ["state", "action", "stamp"] + [f"image.{c}" for c in self.info.camera_names]
        keys += ["objects"] if self.info.objects else []
        return {k: self.frames(ep, k, np.arange(n)) for k in keys}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen their own handles
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


INTERFACE = ("robot", "action_layout", "camera_names", "image_size", "dt")


def interface(info: Any) -> dict[str, Any]:
    """The robot interface a dataset (DatasetInfo) or a model (ModelConfig) is made for:
    what datasets trained as one, and a checkpoint and the data it is fine-tuned on, share."""
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in ((k, getattr(info, k)) for k in INTERFACE)}


class ConcatReader:
    """Several datasets of one robot read as one (one dataset per task, say): their episodes
    in the order given. Object poses are kept only where every dataset records the same."""

    def __init__(self, readers: list[EpisodeReader]) -> None:
        if not readers:
            raise ValueError("no datasets")
        first = readers[0].info
        for r in readers[1:]:
            if interface(r.info) != interface(first):
                raise ValueError(
                    f"{r.root}: robot, action layout, cameras, image size or dt differ from "
                    f"{readers[0].root} ({interface(r.info)} against {interface(first)})")
        same = all(r.info.objects == first.objects for r in readers)
        self.info = dataclasses.replace(first, objects=first.objects if same else ())
        self.readers = readers
        self.root = " + ".join(str(r.root) for r in readers)
        self._index = [(r, e) for r in readers for e in range(len(r))]

    def __len__(self) -> int:
        return len(self._index)

    def length(self, ep: int) -> int:
        r, e = self._index[ep]
        return r.length(e)

    def task(self, ep: int) -> str:
        r, e = self._index[ep]
        return r.task(e)

    def source(self, ep: int) -> dict[str, Any]:
        r, e = self._index[ep]
        return r.source(e)

    def frames(self, ep: int, key: str, idx: np.ndarray) -> np.ndarray:
        r, e = self._index[ep]
        return r.frames(e, key, idx)

    def episode(self, ep: int) -> dict[str, np.ndarray]:
        r, e = self._index[ep]
        return r.episode(e)

    def close(self) -> None:
        for r in self.readers:
            r.close()


def open_dataset(paths: str | Path | list[str | Path] | tuple[str | Path, ...]
                 ) -> EpisodeReader | ConcatReader:
    """One dataset directory, or several of the same robot read as one."""
    if isinstance(paths, (str, Path)):
        return EpisodeReader(paths)
    readers = [EpisodeReader(p) for p in paths]
    return readers[0] if len(readers) == 1 else ConcatReader(readers)


# safetensors dtype names -> numpy
_DTYPES = {"U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "U32": np.uint32,
           "I32": np.int32, "U64": np.uint64, "I64": np.int64, "F16": np.float16,
           "F32": np.float32, "F64": np.float64, "BOOL": np.bool_}
MAX_OPEN_PARTS = 512  # file descriptors an EpisodeReader keeps open
JPEG_KEYS = ("jpeg", "jpeg_offsets")


class PartRows:
    """Rows of the tensors of one safetensors part, read with exact positioned reads.

    Training samples a few frames at random from a dataset usually larger than what the page
    cache keeps; a memory map's readahead turns each 27 kB image row into a read of hundreds of
    kB (measured on the G1 data, two runs of 20 steps: 81 and 210 MB read per training step,
    against 1.8 and 3.8 MB here; training went from an IO-bound 1.2 steps/s to 2.3). Here a
    read is exactly the rows asked for, with the kernel's readahead off for the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "rb", buffering=0)  # closed by close() or collection
        self._fd = self._file.fileno()
        try:
            self._tensors = self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> dict[str, tuple[np.dtype, tuple[int, ...], int, int]]:
        """key -> (little-endian dtype, shape, file offset of the data, bytes per row)."""
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
            head = os.pread(self._fd, 8, 0)
            if len(head) != 8:
                raise ValueError("truncated header")
            n = int.from_bytes(head, "little")
            header = json.loads(os.pread(self._fd, n, 8))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a readable safetensors file ({exc})") from exc
        header.pop("__metadata__", None)
        size = os.fstat(self._fd).st_size
        tensors = {}
        for key, t in header.items():
            if t["dtype"] not in _DTYPES:
                raise ValueError(f"{self.path}: tensor {key!r} has dtype {t['dtype']}; "
                                 f"readable: {', '.join(_DTYPES)}")
            begin, end = (8 + n + int(o) for o in t["data_offsets"])
            if end > size:
                raise ValueError(f"{self.path}: truncated (tensor {key!r} ends past the file)")
            dtype, shape = np.dtype(_DTYPES[t["dtype"]]).newbyteorder("<"), tuple(t["shape"])
            row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            tensors[key] = (dtype, shape, begin, row)
        return tensors

    def rows(self, key: str, start: int, count: int) -> np.ndarray:
        """Rows [start, start + count) of tensor `key`."""
        if key not in self._tensors:
            raise KeyError(f"{self.path}: no tensor {key!r}")
        dtype, shape, offset, row = self._tensors[key]
        if not shape or start < 0 or count < 1 or start + count > shape[0]:
            raise IndexError(f"{self.path}: rows [{start}, {start + count}) of {key!r} "
                             f"{shape}")
        data = os.pread(self._fd, row * count, offset + row * start)
        if len(data) != row * count:
            raise ValueError(f"{self.path}: truncated tensor {key!r}")
        out = np.frombuffer(data, dtype).reshape((count, *shape[1:]))
        return out if dtype.isnative else out.astype(dtype.newbyteorder("="))

    def jpeg_rows(self, camera: str, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of a JPEG-stored camera, decoded: (count, H, W, 3)
        uint8 RGB. One read for the offsets, one for the bytes of the run of frames."""
        import cv2

        offsets = self.rows(f"jpeg_offsets.{camera}", start, count + 1)
        first = int(offsets[0])
        data = self.rows(f"jpeg.{camera}", first, int(offsets[-1]) - first)
        frames = []
        for i in range(count):
            buf = data[int(offsets[i]) - first: int(offsets[i + 1]) - first]
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{self.path}: frame {start + i} of {camera} does not decode")
            frames.append(bgr[:, :, ::-1])
        return np.ascontiguousarray(np.stack(frames))

    def close(self) -> None:
        self._file.close()


def recode_dataset(src: str | Path, out: str | Path, image_format: str,
                   jpeg_quality: int = JPEG_QUALITY, progress: bool = False) -> Path:
    """A copy of dataset `src` at `out` (atomically) with images stored as `image_format`;
    everything else as it was."""
    from tqdm import tqdm

    from wam_ros.data.atomic import atomic_directory

    reader = EpisodeReader(src, min_length=0)
    info = dataclasses.replace(reader.info, image_format=image_format)
    total = sum(reader.length(e) for e in range(len(reader)))
    with atomic_directory(out) as root, tqdm(total=total, unit="frame", desc="recode",
                                             disable=not progress) as bar:
        writer = DatasetWriter(root, info, jpeg_quality=jpeg_quality)
        for e in range(len(reader)):
            raw = reader.episodes[e]
            ep = writer.new_episode(raw["task"], source=raw.get("source"))
            n = reader.length(e)
            for first in range(0, n, 64):
                idx = np.arange(first, min(n, first + 64))
                data = {k: reader.frames(e, k, idx) for k in
                        ["state", "action", "stamp"] + (["objects"] if info.objects else [])}
                images = {c: reader.frames(e, f"image.{c}", idx) for c in info.camera_names}
                for i in range(len(idx)):
                    ep.add(float(data["stamp"][i]), {c: v[i] for c, v in images.items()},
                           data["state"][i], data["action"][i],
                           data["objects"][i] if info.objects else None)
                bar.update(len(idx))
            ep.close(success=raw.get("success"), complete=raw.get("complete", True))
    reader.close()
    return Path(out)


class WindowDataset:
    """torch-style Dataset of training windows: `chunks` consecutive chunks of `horizon`.

    Sample i (deterministic from i): an episode and a start frame t0; frames t_c = t0 + c*H for
    c = 0..chunks (the last one is the future target of the last chunk), indices past the end
    clamp to the last frame (the robot holds still). rest_tolerance > 0 ends each episode
    before its rest tail (`rest_tail_start`). Returns a dict of numpy arrays:
      images (chunks+1, ncam, 3, H, W) uint8, state (chunks, D), actions (chunks, H, D)
      absolute, task (str); with `objects`, also objects (chunks, K) at each chunk start
      (the dataset must record them).
    """

    def __init__(self, reader: EpisodeReader, episodes: list[int], horizon: int, chunks: int,
                 samples_per_epoch: int | None = None, seed: int = 0,
                 rest_tolerance: float = 0.0, objects: bool = False) -> None:
        if not episodes:
            raise ValueError("no episodes for this split")
        if objects and not reader.info.objects:
            raise ValueError(f"{reader.root}: the dataset records no object poses")
        self.objects = objects
        self.reader, self.episodes = reader, list(episodes)
        self.horizon, self.chunks = horizon, chunks
        self.lengths = {e: reader.length(e) for e in self.episodes}
        if rest_tolerance > 0:
            for e in self.episodes:
                state = reader.frames(e, "state", np.arange(self.lengths[e]))
                self.lengths[e] = max(rest_tail_start(state, rest_tolerance), 2)
        lengths = np.array([self.lengths[e] for e in self.episodes])
        self.weights = lengths / lengths.sum()
        self.n = samples_per_epoch or int(lengths.sum())
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, i))
        ep = self.episodes[int(rng.choice(len(self.episodes), p=self.weights))]
        n = self.lengths[ep]
        t0 = int(rng.integers(0, max(1, n - self.horizon)))
        frame_idx = np.minimum(t0 + self.horizon * np.arange(self.chunks + 1), n - 1)
        act_idx = np.minimum(t0 + np.arange(self.chunks * self.horizon), n - 1)
        cams = self.reader.info.camera_names
        images = np.stack([self.reader.frames(ep, f"image.{c}", frame_idx) for c in cams], 1)
        item = {
            "images": images.transpose(0, 1, 4, 2, 3),  # (C+1, ncam, 3, H, W)
            "state": self.reader.frames(ep, "state", frame_idx[:-1]).astype(np.float32),
            "actions": self.reader.frames(ep, "action", act_idx).astype(np.float32).reshape(
                self.chunks, self.horizon, -1),
            "task": self.reader.task(ep),
        }
        if self.objects:
            item["objects"] = self.reader.frames(ep, "objects", frame_idx[:-1]).astype(
                np.float32)
        return item


def rest_tail_start(state: np.ndarray, tolerance: float) -> int:
    """Index of the first frame from which the state stays within `tolerance` (max abs over
    the dimensions) of the final state: where the episode's rest tail starts."""
    far = np.abs(np.asarray(state) - np.asarray(state)[-1]).max(axis=1) > tolerance
    moving = np.flatnonzero(far)
    return int(moving[-1]) + 1 if moving.size else 0


def split_episodes(n: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split by episode (at least one of each when n >= 2)."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def make_synthetic_dataset(root: str | Path, robot: Any, n_episodes: int = 8,
                           length: int = 60, image_size: tuple[int, int] = (32, 32),
                           seed: int = 0, objects: bool = False) -> Path:
    """A small learnable dataset for tests and smoke runs (not a simulator).

    Each episode moves the joints from its task's start towards its task's goal (three tasks,
    start and goal jittered per episode) with a first-order controller; every camera shows one
    blob whose position encodes the goal (two joints) and one that encodes the current state
    (two other joints), so both the next observation and the actions are predictable from the
    images, the state and the task. `objects`: also record the goal blob of the first camera
    as an object pose ("goal": x, y in [-1, 1] image units, z = yaw = 0).
    """
    rng = np.random.default_rng(seed)
    lo, hi = robot.limits_array("lower"), robot.limits_array("upper")
    grip = robot.gripper_mask()
    lo = np.where(grip, 0.0, lo)
    hi = np.where(grip, 1.0, hi)
    mid, span = (lo + hi) / 2, (hi - lo) / 2
    columns = ("goal.x", "goal.y", "goal.z", "goal.yaw") if objects else ()
    info = DatasetInfo(robot.name, tuple(robot.action_layout), tuple(robot.camera_names),
                       tuple(image_size), robot.action_dt, columns)
    writer = DatasetWriter(root, info, part_frames=max(8, length // 2))
    h, w = image_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def blob(u: float, v: float) -> np.ndarray:  # u, v in [-1, 1]
        cy, cx = (v * 0.4 + 0.5) * h, (u * 0.4 + 0.5) * w
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.08 * h) ** 2))

    task_goals = [mid + span * rng.uniform(-0.5, 0.5, mid.shape) for _ in range(3)]
    task_starts = [mid + span * rng.uniform(-0.5, 0.5, mid.shape) for _ in range(3)]
    for e in range(n_episodes):
        goal = task_goals[e % 3] + span * rng.uniform(-0.05, 0.05, mid.shape)
        state = task_starts[e % 3] + span * rng.uniform(-0.1, 0.1, mid.shape)
        gn = (goal - mid) / span  # in [-0.5, 0.5]
        with writer.new_episode(task=f"reach goal {'abc'[e % 3]}") as ep:
            for t in range(length):
                sn = (state - mid) / span
                images = {}
                for ci, cam in enumerate(robot.camera_names):
                    j = (2 * ci) % (len(mid) - 3)
                    img = np.zeros((h, w, 3), np.float32)
                    img[..., 0] = blob(2 * gn[j], 2 * gn[j + 1])
                    img[..., 1] = blob(2 * sn[j + 2], 2 * sn[j + 3])
                    img[..., 2] = 0.3 * blob(2 * sn[j], 2 * gn[j + 2])
                    images[cam] = (img * 255).clip(0, 255).astype(np.uint8)
                action = state + np.clip(0.15 * (goal - state), -0.05 * span, 0.05 * span)
                action += rng.normal(0, 0.002, action.shape) * span
                action = np.clip(action, lo, hi)
                pose = np.array([2 * gn[0], 2 * gn[1], 0.0, 0.0]) if objects else None
                ep.add(t * robot.action_dt, images, state, action, pose)
                state = action
    return Path(root)
