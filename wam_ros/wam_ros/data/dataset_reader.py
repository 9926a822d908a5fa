"""Reading episode datasets (the format: data.dataset): EpisodeReader gives random access to
the frames of every episode with exact positioned reads (PartRows), ConcatReader reads several
datasets of one robot as one, open_dataset picks between them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.data.dataset import DatasetInfo, interface, read_index

# safetensors dtype names -> numpy
_DTYPES = {"U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "U32": np.uint32,
           "I32": np.int32, "U64": np.uint64, "I64": np.int64, "F16": np.float16,
           "F32": np.float32, "F64": np.float64, "BOOL": np.bool_}
MAX_OPEN_PARTS = 512  # file descriptors an EpisodeReader keeps open


class EpisodeReader:
    """Random access to frames of every episode (exact positioned reads: PartRows)."""

    def __init__(self, root: str | Path, min_length: int = 1) -> None:
        self.root = Path(root)
        doc = read_index(self.root)
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


__all__ = ["EpisodeReader", "ConcatReader", "open_dataset", "PartRows", "MAX_OPEN_PARTS"]
