"""Episode dataset format: what the recorder / bag converter / scripted expert write and the
trainer reads. ROS-free, no pickle. This module is the format itself (its constants, the
dataset header DatasetInfo, index.json); data.dataset_writer writes it, data.dataset_reader
reads it, data.windows samples training windows from it.

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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


INTERFACE = ("robot", "action_layout", "camera_names", "image_size", "dt")


def interface(info: Any) -> dict[str, Any]:
    """The robot interface a dataset (DatasetInfo) or a model (ModelConfig) is made for:
    what datasets trained as one, and a checkpoint and the data it is fine-tuned on, share."""
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in ((k, getattr(info, k)) for k in INTERFACE)}


def read_index(root: Path) -> dict[str, Any]:
    path = root / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root}: not an episode dataset (no index.json)")
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{path}: format/version {doc.get('format')!r}/{doc.get('version')!r};"
                         f" expected {FORMAT!r}/{VERSION}")
    return doc


__all__ = [
    "FORMAT", "VERSION", "IMAGE_FORMATS", "JPEG_QUALITY", "DatasetInfo", "INTERFACE",
    "interface", "read_index",
]
