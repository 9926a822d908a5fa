"""Plain data passed between the layers: what a policy sees and what it returns.

These mirror wam_ros_msgs/Observation and wam_ros_msgs/ActionChunk without any ROS types, so
model, runtime and core code (and their tests) never touch messages; nodes/conversions.py maps
one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class ActionSpace(IntEnum):
    """Values match the SPACE_* constants of wam_ros_msgs/ActionChunk."""

    LATENT = 0
    JOINT_DELTA = 1
    JOINT_ABSOLUTE = 2

    @classmethod
    def parse(cls, name: str) -> ActionSpace:
        names = {"latent": cls.LATENT, "delta": cls.JOINT_DELTA, "absolute": cls.JOINT_ABSOLUTE}
        if name not in names:
            raise ValueError(f"unknown action space {name!r}; allowed: {', '.join(names)}")
        return names[name]


@dataclass
class Observation:
    """One synchronised observation at model resolution.

    images: camera name -> (H, W, 3) uint8 RGB, in the robot's camera order.
    joint_positions: (D,) float64 in the robot's action layout, joint units (rad / m).
    stamp: seconds (ROS time of the newest camera frame).
    """

    stamp: float
    images: dict[str, np.ndarray]
    joint_positions: np.ndarray
    task: str = ""
    sequence: int = 0

    def __post_init__(self) -> None:
        for name, img in self.images.items():
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(
                    f"camera {name!r}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}"
                )
        if self.joint_positions.ndim != 1:
            raise ValueError(f"joint_positions must be (D,), got {self.joint_positions.shape}")


@dataclass
class Chunk:
    """A chunk of H future actions; action k is meant for stamp + start_offset + k * dt.

    actions: (H, D) float32. For JOINT_DELTA, relative to `reference` (D,) joint positions.
    """

    stamp: float
    actions: np.ndarray
    dt: float
    space: ActionSpace = ActionSpace.JOINT_ABSOLUTE
    names: tuple[str, ...] = ()
    chunk_id: int = 0
    episode_id: int = 0
    start_offset: float = 0.0
    reference: np.ndarray | None = None
    inference_time: float = 0.0
    blocking_time: float = 0.0
    extras: dict[str, float] = field(default_factory=dict)  # e.g. skipped flow steps

    def __post_init__(self) -> None:
        if self.actions.ndim != 2:
            raise ValueError(f"actions must be (H, D), got shape {self.actions.shape}")
        if self.dt <= 0.0:
            raise ValueError(f"dt must be > 0, got {self.dt}")
        if self.names and len(self.names) != self.actions.shape[1]:
            raise ValueError(
                f"{len(self.names)} names for {self.actions.shape[1]} action dimensions"
            )

    @property
    def horizon(self) -> int:
        return self.actions.shape[0]

    @property
    def dim(self) -> int:
        return self.actions.shape[1]

    def times(self) -> np.ndarray:
        """(H,) absolute time of each action."""
        return self.stamp + self.start_offset + self.dt * np.arange(self.horizon)


@dataclass(frozen=True)
class InputContract:
    """What the loaded policy takes: its cameras (in order) and image size. The policy node
    announces it (from its checkpoint or its server's metadata) and the observation node
    follows it, so no configuration file repeats the model's input."""

    cameras: tuple[str, ...]
    image_height: int
    image_width: int

    def __post_init__(self) -> None:
        if not self.cameras or self.image_height <= 0 or self.image_width <= 0:
            raise ValueError(f"input contract: cameras {list(self.cameras)}, image "
                             f"{self.image_width}x{self.image_height}; allowed: at least one "
                             "camera and a positive size")

    def to_json(self) -> str:
        import json

        return json.dumps({"cameras": list(self.cameras), "image_height": self.image_height,
                           "image_width": self.image_width})

    @classmethod
    def from_json(cls, text: str) -> InputContract:
        import json

        try:
            doc = json.loads(text)
            return cls(tuple(str(c) for c in doc["cameras"]), int(doc["image_height"]),
                       int(doc["image_width"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"input contract {text[:200]!r}: {exc}") from exc
