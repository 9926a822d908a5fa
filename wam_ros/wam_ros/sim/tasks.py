"""Simulated tasks: which objects a scene holds, how they are randomised, how success is detected.

A task is chosen by name (`make_task`, `TASKS`); each has a natural-language instruction (the
model's task string) and reports a phase (the furthest milestone reached) and success, computed
from the physics state alone (contacts and poses), never from what an expert intended:

* `pick_place` — a 4 cm cube at a random pose on the robot's right half of the table goes into a
  bin at a random place left of the centre. Success: the cube rests inside the bin, below its
  rim, and no gripper touches it.
* `handover` — a 16 cm bar lies on the right half of the table; the right arm picks it up by its
  right end and offers it in the middle, the left arm takes it by its left end and puts it down
  on a green target on the left. Success: the bar rests flat on the target, released, and it
  was held by both grippers at once off the table after the right arm lifted it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from wam_ros.sim.scene import BIN_INNER_HALF, BIN_WALL_HEIGHT, TARGET_HALF, Scene


@dataclass(frozen=True)
class Region:
    """An axis-aligned rectangle on the table (world x, y), sampled uniformly."""

    x: tuple[float, float]
    y: tuple[float, float]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(*self.x), rng.uniform(*self.y)])


@dataclass(frozen=True)
class Workspace:
    pick: Region  # where the object starts (its centre)
    place: Region  # bin / target centre
    max_yaw: float  # object yaw drawn from [-max_yaw, max_yaw]
    handover: tuple[float, float, float] = (0.0, 0.0, 0.0)  # x, y, height above the table


# Regions are world coordinates (robot root at x = y = 0, arms at y > 0 left, y < 0 right),
# chosen inside what the scripted expert reaches with a top-down grasp.
WORKSPACES: dict[tuple[str, str], Workspace] = {
    ("cobot_magic", "pick_place"): Workspace(
        pick=Region((0.36, 0.44), (-0.26, -0.15)), place=Region((0.33, 0.37), (-0.04, 0.03)),
        max_yaw=np.pi / 4),
    ("cobot_magic", "handover"): Workspace(
        pick=Region((0.37, 0.43), (-0.24, -0.16)), place=Region((0.36, 0.42), (0.18, 0.24)),
        max_yaw=0.3, handover=(0.40, 0.0, 0.14)),
    ("agibot_g1", "pick_place"): Workspace(
        pick=Region((0.42, 0.52), (-0.26, -0.12)), place=Region((0.44, 0.50), (-0.01, 0.07)),
        max_yaw=np.pi / 4),
    ("agibot_g1", "handover"): Workspace(
        pick=Region((0.44, 0.50), (-0.24, -0.16)), place=Region((0.44, 0.50), (0.16, 0.22)),
        max_yaw=0.3, handover=(0.48, 0.0, 0.14)),
}


def yaw_of(quat: np.ndarray) -> float:
    """Rotation about world z of a body resting flat (quaternion w, x, y, z)."""
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def wrap(angle: float, period: float) -> float:
    """Angle folded into [-period/2, period/2) (symmetries of a box seen from above)."""
    return float((angle + period / 2) % period - period / 2)


class Task:
    """Base class: randomisation, per-step tracking, success and phase of one task."""

    name: ClassVar[str] = ""
    instruction: ClassVar[str] = ""
    objects: ClassVar[tuple[str, ...]] = ()
    phases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        key = (scene.robot.name, self.name)
        if key not in WORKSPACES:
            raise ValueError(f"task {self.name!r} has no workspace for robot "
                             f"{scene.robot.name!r}")
        self.workspace = WORKSPACES[key]
        self.table_top = scene.layout.table_top
        self._milestone = 0
        self.dropped = False

    # ---- to implement ------------------------------------------------------------------
    def randomise(self, rng: np.random.Generator, model: mujoco.MjModel,
                  data: mujoco.MjData) -> None:
        raise NotImplementedError

    def _milestones(self, model: mujoco.MjModel, data: mujoco.MjData,
                    held: dict[str, bool]) -> int:
        """Index into `phases` of the milestone the current state shows (monotone)."""
        raise NotImplementedError

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        raise NotImplementedError

    def observe(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Object poses an expert plans from: name -> [x, y, z, yaw] (world)."""
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator, model: mujoco.MjModel,
              data: mujoco.MjData) -> None:
        self._milestone = 0
        self.dropped = False
        self.randomise(rng, model, data)

    def update(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Track milestones; call at ~100 Hz while the physics runs."""
        held = self.held(data)
        self._milestone = max(self._milestone, self._milestones(model, data, held))
        obj = self.scene.free[self.objects[0]]
        if data.xpos[obj.body][2] < self.table_top - 0.05:
            self.dropped = True

    @property
    def phase(self) -> str:
        return "dropped" if self.dropped else self.phases[self._milestone]

    def touching(self, data: mujoco.MjData, geom: int) -> set[int]:
        """Geoms in contact with `geom`."""
        pairs = data.contact.geom[: data.ncon]
        out = set(pairs[pairs[:, 0] == geom, 1].tolist())
        out.update(pairs[pairs[:, 1] == geom, 0].tolist())
        return out

    def held(self, data: mujoco.MjData, name: str | None = None) -> dict[str, bool]:
        """arm -> whether every finger of its gripper touches the object."""
        obj = self.scene.free[name or self.objects[0]]
        touching = self.touching(data, obj.geom)
        return {arm: all(f & touching for f in fingers)
                for arm, fingers in self.scene.finger_geoms.items()}

    def on_table(self, data: mujoco.MjData, name: str | None = None) -> bool:
        obj = self.scene.free[name or self.objects[0]]
        return self.scene.table_geom in self.touching(data, obj.geom)

    def resting(self, data: mujoco.MjData, name: str | None = None) -> bool:
        obj = self.scene.free[name or self.objects[0]]
        return float(np.linalg.norm(data.qvel[obj.dof:obj.dof + 3])) < 0.05

    def _place_free(self, data: mujoco.MjData, name: str, xy: np.ndarray, yaw: float) -> None:
        obj = self.scene.free[name]
        data.qpos[obj.qpos:obj.qpos + 3] = [xy[0], xy[1], self.table_top + obj.half[2]]
        data.qpos[obj.qpos + 3:obj.qpos + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        data.qvel[obj.dof:obj.dof + 6] = 0.0

    def _pose(self, data: mujoco.MjData, name: str) -> np.ndarray:
        obj = self.scene.free[name]
        pos = data.qpos[obj.qpos:obj.qpos + 3]
        return np.array([*pos, yaw_of(data.qpos[obj.qpos + 3:obj.qpos + 7])])

    def info(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, object]:
        held = self.held(data)
        return {"task": self.name, "instruction": self.instruction, "phase": self.phase,
                "success": bool(self.success(model, data)),
                "held_by": [arm for arm, h in held.items() if h]}


class PickPlace(Task):
    name = "pick_place"
    instruction = "pick up the red cube and put it in the blue bin"
    objects = ("cube", "bin")
    phases = ("approach", "lifted", "in_bin", "done")

    def randomise(self, rng, model, data) -> None:
        cube = self.workspace.pick.sample(rng)
        yaw = rng.uniform(-self.workspace.max_yaw, self.workspace.max_yaw)
        bin_xy = self.workspace.place.sample(rng)
        self._place_free(data, "cube", cube, yaw)
        model.body_pos[self.scene.fixtures["bin"]] = [bin_xy[0], bin_xy[1], self.table_top]

    def _in_bin(self, model, data) -> bool:
        cube = data.xpos[self.scene.free["cube"].body]
        centre = model.body_pos[self.scene.fixtures["bin"]]
        inside = np.all(np.abs(cube[:2] - centre[:2]) < BIN_INNER_HALF - 0.005)
        return bool(inside and cube[2] < self.table_top + BIN_WALL_HEIGHT)

    def _milestones(self, model, data, held) -> int:
        if self.success(model, data):
            return 3
        if self._in_bin(model, data):
            return 2
        return 1 if any(held.values()) and not self.on_table(data) else 0

    def success(self, model, data) -> bool:
        return (self._in_bin(model, data) and not any(self.held(data).values())
                and self.resting(data))

    def observe(self, data) -> dict[str, np.ndarray]:
        cube = self._pose(data, "cube")
        cube[3] = wrap(cube[3], np.pi / 2)  # a cube looks the same every quarter turn
        bin_pos = self.scene.model.body_pos[self.scene.fixtures["bin"]]
        return {"cube": cube, "bin": np.array([*bin_pos, 0.0])}


class Handover(Task):
    name = "handover"
    instruction = ("pick up the orange bar with the right arm, hand it to the left arm and put "
                   "it on the green target")
    objects = ("bar", "target")
    phases = ("approach", "lifted", "handover", "transferred", "done")
    giver, taker = "right", "left"

    def randomise(self, rng, model, data) -> None:
        bar = self.workspace.pick.sample(rng)
        yaw = rng.uniform(-self.workspace.max_yaw, self.workspace.max_yaw)
        target = self.workspace.place.sample(rng)
        self._place_free(data, "bar", bar, yaw)
        model.body_pos[self.scene.fixtures["target"]] = [target[0], target[1], self.table_top]

    def _milestones(self, model, data, held) -> int:
        off_table = not self.on_table(data)
        m = self._milestone
        if m == 0 and held[self.giver] and off_table:
            return 1
        if m == 1 and held[self.giver] and held[self.taker] and off_table:
            return 2
        if m == 2 and held[self.taker] and not held[self.giver]:
            return 3
        if m == 3 and self.success(model, data):
            return 4
        return m

    def _on_target(self, model, data) -> bool:
        bar = data.xpos[self.scene.free["bar"].body]
        centre = model.body_pos[self.scene.fixtures["target"]]
        flat = abs(bar[2] - (self.table_top + self.scene.free["bar"].half[2])) < 0.01
        return bool(np.all(np.abs(bar[:2] - centre[:2]) < TARGET_HALF) and flat)

    def success(self, model, data) -> bool:
        return (self._milestone >= 3 and self._on_target(model, data)
                and not any(self.held(data).values()) and self.resting(data))

    def observe(self, data) -> dict[str, np.ndarray]:
        bar = self._pose(data, "bar")
        bar[3] = wrap(bar[3], np.pi)  # the bar looks the same every half turn
        target = self.scene.model.body_pos[self.scene.fixtures["target"]]
        return {"bar": bar, "target": np.array([*target, 0.0])}


TASKS: dict[str, type[Task]] = {t.name: t for t in (PickPlace, Handover)}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def make_task(name: str, scene: Scene) -> Task:
    return task_class(name)(scene)


__all__ = ["TASKS", "WORKSPACES", "Handover", "PickPlace", "Region", "Task", "Workspace",
           "make_task", "task_class", "wrap", "yaw_of"]
