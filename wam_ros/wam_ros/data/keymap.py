"""Key maps for importing other people's datasets (LeRobot, ALOHA-style HDF5) and the one writer
that turns their episodes into ours. ROS-free.

A key map (YAML, `--map`) says which source fields feed our state, action, cameras and object
poses, and how their vector entries map onto the robot's action layout:

```yaml
state: observation.state       # LeRobot feature / HDF5 dataset path of the joint state
action: action                 # ... of the commanded joint positions
cameras:                       # our camera -> the source's image / video key
  cam_high: observation.images.top
joints:                        # our action-layout entry -> index (int) or name (str) in both
  left_joint1: 0               #   vectors; omitted: by name where the source names every
  ...                          #   entry, else by position where the sizes agree
grippers:                      # gripper entries: the source's closed and open values; the
  left_joint7: {closed: 0.0, open: 0.076}   # value is normalised to our 0 (closed) .. 1 (open)
objects: observation.environment_state   # optional: object poses (needs names in the source)
stamp: stamp                   # optional: float seconds per frame (default: frame / fps)
fps: 30                        # optional: frame rate where the source has none (HDF5)
task: ""                       # optional: task of every episode where the source has none
```
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.core.config import ConfigError, load_yaml
from wam_ros.core.image import RESIZE_MODES, prepare_image
from wam_ros.data.atomic import atomic_directory
from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_writer import DatasetWriter

MAP_KEYS = ("state", "action", "cameras", "joints", "grippers", "objects", "stamp", "fps",
            "task")


@dataclass(frozen=True)
class KeyMap:
    state: str = "observation.state"
    action: str = "action"
    cameras: dict[str, str] = field(default_factory=dict)
    joints: dict[str, int | str] = field(default_factory=dict)
    grippers: dict[str, tuple[float, float]] = field(default_factory=dict)  # (closed, open)
    objects: str = ""
    stamp: str = ""
    fps: float = 0.0
    task: str = ""

    @classmethod
    def load(cls, path: str | Path | None, defaults: KeyMap | None = None) -> KeyMap:
        """A YAML key map; keys it leaves out come from `defaults`."""
        base = defaults or cls()
        if path is None:
            return base
        doc = load_yaml(path) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a key map is a mapping with keys {', '.join(MAP_KEYS)}")
        unknown = sorted(set(doc) - set(MAP_KEYS))
        if unknown:
            raise ConfigError(f"{path}: unknown keys {unknown}; allowed: {', '.join(MAP_KEYS)}")
        values: dict[str, Any] = {}
        for key in ("state", "action", "objects", "stamp", "task"):
            if key in doc:
                if not isinstance(doc[key], str):
                    raise ConfigError(f"{path}: {key}: got {doc[key]!r}; allowed: a string")
                values[key] = doc[key]
        if "fps" in doc:
            if not isinstance(doc["fps"], (int, float)) or doc["fps"] <= 0:
                raise ConfigError(f"{path}: fps: got {doc['fps']!r}; allowed: a number > 0")
            values["fps"] = float(doc["fps"])
        for key in ("cameras", "joints", "grippers"):
            if key in doc and not isinstance(doc[key], dict):
                raise ConfigError(f"{path}: {key}: got {doc[key]!r}; allowed: a mapping")
        if "cameras" in doc:
            values["cameras"] = {str(k): str(v) for k, v in doc["cameras"].items()}
        if "joints" in doc:
            joints: dict[str, int | str] = {}
            for k, v in doc["joints"].items():
                if not isinstance(v, (int, str)) or isinstance(v, bool):
                    raise ConfigError(f"{path}: joints.{k}: got {v!r}; allowed: an index "
                                      "(int) or a name (str) in the source vectors")
                joints[str(k)] = v
            values["joints"] = joints
        if "grippers" in doc:
            grippers = {}
            for k, v in doc["grippers"].items():
                ok = (isinstance(v, dict) and set(v) == {"closed", "open"}
                      and all(isinstance(x, (int, float)) for x in v.values())
                      and v["closed"] != v["open"])
                if not ok:
                    raise ConfigError(f"{path}: grippers.{k}: got {v!r}; allowed: "
                                      "{closed: NUMBER, open: NUMBER} (different numbers)")
                grippers[str(k)] = (float(v["closed"]), float(v["open"]))
            values["grippers"] = grippers
        return KeyMap(**{**base.__dict__, **values})


def resolve_indices(layout: tuple[str, ...], keymap: KeyMap, names: list[str] | None,
                    dim: int, what: str) -> np.ndarray:
    """Per action-layout entry, its index in the source vector of size `dim` (names: the
    source's entry names where it has them)."""
    if keymap.joints:
        missing = [j for j in layout if j not in keymap.joints]
        if missing:
            raise ConfigError(f"key map: joints does not map {missing} (every entry of the "
                              f"robot's action layout needs a source index or name)")
        out = []
        for j in layout:
            src = keymap.joints[j]
            if isinstance(src, str):
                if not names or src not in names:
                    raise ConfigError(f"key map: joints.{j}: {src!r} is not a name of {what} "
                                      f"(names: {names})")
                out.append(names.index(src))
            else:
                if not 0 <= src < dim:
                    raise ConfigError(f"key map: joints.{j}: index {src} outside {what} "
                                      f"(size {dim})")
                out.append(src)
        return np.array(out, np.int64)
    if names and all(j in names for j in layout):
        return np.array([names.index(j) for j in layout], np.int64)
    if dim == len(layout):
        return np.arange(dim)
    raise ConfigError(f"{what} has {dim} entries {names or ''} and the robot's action layout "
                      f"{len(layout)} ({', '.join(layout)}): give a key map (--map) with joints")


def to_layout(values: np.ndarray, idx: np.ndarray, layout: tuple[str, ...],
              keymap: KeyMap) -> np.ndarray:
    """(n, dim) source vectors -> (n, D) in the action layout, grippers normalised 0..1."""
    out = np.asarray(values, np.float64)[:, idx]
    for k, name in enumerate(layout):
        if name in keymap.grippers:
            closed, open_ = keymap.grippers[name]
            out[:, k] = np.clip((out[:, k] - closed) / (open_ - closed), 0.0, 1.0)
    return out.astype(np.float32)


@dataclass
class SourceEpisode:
    """One episode of a foreign dataset, already in our layout (images still at their size)."""

    task: str
    state: np.ndarray  # (n, D) float32
    action: np.ndarray  # (n, D) float32
    stamp: np.ndarray  # (n,) float64 seconds
    images: Any  # () -> iterator of {camera: (h, w, 3) uint8}, n of them, in order
    objects: np.ndarray | None = None  # (n, K)
    success: bool | None = None
    complete: bool = True
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.state)


def write_dataset(out: str | Path, info: DatasetInfo, episodes: Iterator[SourceEpisode],
                  resize_mode: str = "center_crop", progress: Any = None) -> dict[str, Any]:
    """Episodes -> our dataset at `out` (must not exist), atomically: a failure anywhere
    (a bad file, a missing frame) leaves no `out`."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {resize_mode!r}; allowed: {', '.join(RESIZE_MODES)}")
    h, w = info.image_size
    count = frames = 0
    with atomic_directory(out) as root:
        writer = DatasetWriter(root, info)
        for src in episodes:
            ep = writer.new_episode(src.task, source=src.source)
            n = src.length
            got = 0
            for t, images in enumerate(src.images()):
                if t >= n:
                    break
                prepared = {c: prepare_image(images[c], h, w, resize_mode)
                            for c in info.camera_names}
                ep.add(float(src.stamp[t]), prepared, src.state[t], src.action[t],
                       None if src.objects is None else src.objects[t])
                got += 1
                if progress is not None:
                    progress.update(1)
            if got != n:
                raise ValueError(f"episode {src.source or count}: {got} image frames for "
                                 f"{n} frames of state / action")
            ep.close(success=src.success, complete=src.complete)
            count += 1
            frames += n
    return {"episodes": count, "frames": frames, "out": str(out)}


__all__ = ["KeyMap", "SourceEpisode", "resolve_indices", "to_layout", "write_dataset"]
