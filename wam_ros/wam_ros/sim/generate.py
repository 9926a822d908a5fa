"""Training episodes from the simulator: the scripted expert's rollouts, recorded in the dataset
format of `wam_ros.data.dataset` (DATASET.md).

Per frame (one per action, dt = 1 / action_rate_hz): every camera rendered at the model's input
size, `state` = measured joint positions in action units (grippers 0..1), `action` = the
absolute position the expert commands at that frame. Episodes whose rollout fails (the task's
own success check, or no smooth plan for that layout) are skipped and counted; seeds go up from
`seed` until `episodes` successful ones are written, so a dataset is reproducible from
(robot, task, seed, episodes).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.data.dataset import DatasetInfo, DatasetWriter


@dataclass
class EpisodeRecord:
    seed: int
    success: bool
    reason: str  # why it failed ("" when it succeeded)
    task: str  # the instruction (the model's task string)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T, H, W, 3)
    state: np.ndarray | None = None  # (T, D)
    action: np.ndarray | None = None  # (T, D)
    stamp: np.ndarray | None = None  # (T,)
    objects: np.ndarray | None = None  # (T, 4 x objects): each object's x, y, z, yaw (world)
    seconds: float = 0.0  # wall time spent

    @property
    def frames(self) -> int:
        return 0 if self.state is None else len(self.state)


@dataclass
class GenerationReport:
    episodes: int
    frames: int
    failed: int
    failed_seeds: list[int]
    seconds: float
    out: str

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def record_episode(sim, seed: int, image_size: tuple[int, int]) -> EpisodeRecord:
    """One expert rollout on `sim` (a Simulator) with every frame recorded."""
    from wam_ros.sim.experts import PlanningError, make_expert, run_expert

    start = time.perf_counter()
    h, w = image_size
    images: dict[str, list[np.ndarray]] = {c: [] for c in sim.robot.camera_names}
    states, actions, stamps, objects = [], [], [], []

    def on_step(sim, action: np.ndarray) -> None:
        for cam, img in sim.render(width=w, height=h).items():
            images[cam].append(img)
        states.append(sim.state())
        objects.append(np.concatenate(list(sim.object_poses().values())))
        actions.append(np.asarray(action, dtype=np.float64))
        stamps.append(sim.elapsed)

    try:
        rollout = run_expert(sim, make_expert(sim), seed=seed, on_step=on_step)
    except PlanningError as exc:
        return EpisodeRecord(seed, False, f"planning: {exc}", sim.task.instruction,
                             seconds=time.perf_counter() - start)
    if not rollout.success:
        return EpisodeRecord(seed, False, f"task not solved (phase {rollout.phase})",
                             sim.task.instruction, seconds=time.perf_counter() - start)
    return EpisodeRecord(
        seed, True, "", sim.task.instruction,
        images={c: np.stack(v) for c, v in images.items()},
        state=np.stack(states).astype(np.float32), action=np.stack(actions).astype(np.float32),
        stamp=np.asarray(stamps, dtype=np.float64),
        objects=np.stack(objects).astype(np.float32), seconds=time.perf_counter() - start)


def object_columns(task: str) -> tuple[str, ...]:
    """Names of the columns record_episode writes for `task`'s objects."""
    from wam_ros.sim.tasks import task_class

    return tuple(f"{o}.{c}" for o in task_class(task).objects for c in ("x", "y", "z", "yaw"))


# ---- worker processes ----------------------------------------------------------------------
_worker: dict[str, object] = {}  # this process's simulator and image size


def _worker_init(robot: str, task: str, image_size: tuple[int, int]) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from wam_ros.sim.mujoco_sim import Simulator

    _worker["sim"] = Simulator(robot, task)
    _worker["size"] = image_size


def _worker_run(seed: int) -> EpisodeRecord:
    return record_episode(_worker["sim"], seed, _worker["size"])


def _records(robot: str, task: str, image_size: tuple[int, int], seeds: Iterator[int],
             workers: int) -> Iterator[EpisodeRecord]:
    """Episode records in seed order, from this process or a pool of `workers` processes."""
    if workers <= 1:
        _worker_init(robot, task, image_size)
        try:
            for seed in seeds:
                yield _worker_run(seed)
        finally:
            _worker.pop("sim").close()
        return
    # spawn: a forked EGL context is not usable in the child
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(robot, task, image_size)) as pool:
        yield from pool.imap(_worker_run, seeds)


def generate_dataset(robot: str, task: str, episodes: int, out: str | Path,
                     image_size: tuple[int, int] = (96, 96), seed: int = 0, workers: int = 1,
                     max_attempts: int | None = None, progress: bool = True
                     ) -> GenerationReport:
    """Write `episodes` successful expert episodes to the dataset at `out` (created or
    appended to); returns counts and speed."""
    from wam_ros.core.robot import RobotSpec
    from wam_ros.sim.tasks import task_class

    spec = RobotSpec.load(robot)
    instruction = task_class(task).instruction
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    max_attempts = max_attempts or 2 * episodes + 10
    info = DatasetInfo(spec.name, tuple(spec.action_layout), tuple(spec.camera_names),
                       (int(image_size[0]), int(image_size[1])), spec.action_dt,
                       object_columns(task))
    writer = DatasetWriter(out, info)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=f"{robot}/{task}", unit="ep")
    written = frames = 0
    failed: list[int] = []
    start = time.perf_counter()
    seeds = iter(range(seed, seed + max_attempts))
    records = _records(spec.name, task, info.image_size, seeds, workers)
    try:
        for rec in records:
            if not rec.success:
                failed.append(rec.seed)
                if bar is not None:
                    bar.set_postfix(failed=len(failed))
                continue
            with writer.new_episode(task=instruction) as ep:
                for k in range(rec.frames):
                    ep.add(float(rec.stamp[k]), {c: v[k] for c, v in rec.images.items()},
                           rec.state[k], rec.action[k], rec.objects[k])
                ep.close(success=True)
            written += 1
            frames += rec.frames
            if bar is not None:
                bar.update(1)
            if written >= episodes:
                break
    finally:
        records.close()  # stops the pool early once enough episodes are written
        if bar is not None:
            bar.close()
    return GenerationReport(written, frames, len(failed), failed,
                            time.perf_counter() - start, str(out))


__all__ = ["EpisodeRecord", "GenerationReport", "generate_dataset", "record_episode"]
