"""Training episodes from the simulator: the scripted expert's rollouts, recorded in the dataset
format of `wam_ros.data.dataset` (docs/dataset.md).

Per frame (one per action, dt = 1 / action_rate_hz): every camera rendered at the model's input
size, `state` = measured joint positions in action units (grippers 0..1), `action` = the
absolute position the expert commands at that frame. Episodes whose rollout fails (the task's
own success check, or no smooth plan for that layout) are skipped and counted; seeds go up from
`seed` until `episodes` successful ones are written, so a dataset is reproducible from
(robot, task, seed, episodes). With a `Recovery`, each episode starts where a checkpoint left
the robot instead (recovery episodes: DAgger-style labels for a policy's own states); with a
`Disturbance`, the expert's approach is off by a random error that its descent corrects (only
the correction is recorded).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.data.dataset import DatasetInfo
from wam_ros.data.dataset_writer import DatasetWriter


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
    source: dict = field(default_factory=dict)  # how it was made (the dataset index keeps it)

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
    failure_kinds: dict[str, int] = field(default_factory=dict)  # failure_kind -> episodes

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Recorder:
    """Collects one frame per action (an `on_step(sim, action)` callback) into a record."""

    def __init__(self, sim, image_size: tuple[int, int]) -> None:
        self.size = image_size
        self.images: dict[str, list[np.ndarray]] = {c: [] for c in sim.robot.camera_names}
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.stamps: list[float] = []
        self.objects: list[np.ndarray] = []

    def __call__(self, sim, action: np.ndarray) -> None:
        h, w = self.size
        for cam, img in sim.render(width=w, height=h).items():
            self.images[cam].append(img)
        self.states.append(sim.state())
        self.objects.append(np.concatenate(list(sim.object_poses().values())))
        self.actions.append(np.asarray(action, dtype=np.float64))
        self.stamps.append(sim.elapsed)

    def record(self, seed: int, task: str, seconds: float, source: dict) -> EpisodeRecord:
        return EpisodeRecord(
            seed, True, "", task, images={c: np.stack(v) for c, v in self.images.items()},
            state=np.stack(self.states).astype(np.float32),
            action=np.stack(self.actions).astype(np.float32),
            stamp=np.asarray(self.stamps, dtype=np.float64),
            objects=np.stack(self.objects).astype(np.float32), seconds=seconds, source=source)


def record_episode(sim, seed: int, image_size: tuple[int, int]) -> EpisodeRecord:
    """One expert rollout on `sim` (a Simulator) with every frame recorded."""
    from wam_ros.sim.expert_rollout import run_expert
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.planning import PlanningError

    start = time.perf_counter()
    recorder = _Recorder(sim, image_size)
    try:
        rollout = run_expert(sim, make_expert(sim), seed=seed, on_step=recorder)
    except PlanningError as exc:
        return EpisodeRecord(seed, False, f"planning: {exc}", sim.task.instruction,
                             seconds=time.perf_counter() - start)
    if not rollout.success:
        return EpisodeRecord(seed, False, f"task not solved (phase {rollout.phase})",
                             sim.task.instruction, seconds=time.perf_counter() - start)
    return recorder.record(seed, sim.task.instruction, time.perf_counter() - start,
                           {"seed": seed, "expert": sim.task.name})


@dataclass(frozen=True)
class Recovery:
    """Recovery episodes: a checkpoint drives the robot through the runtime (`stack_rollout`)
    until a switch time drawn uniformly from `switch_s` (from the episode's seed), then the
    scripted expert plans from the state the policy left — measured joints, the objects where
    they are now — and finishes the task; only the expert's part is recorded. Training on
    them labels the states a policy itself reaches (DAgger's idea with the expert taking over,
    as a human teleoperator would), which expert episodes from home never show. Episodes where
    the policy got past the task's first phase before the switch are skipped."""

    checkpoint: str
    switch_s: tuple[float, float] = (2.0, 12.0)
    scheduler: str = "async"
    latency_s: float = 0.04
    latency_p99_s: float | None = 0.09
    backend: str = "torch"

    def __post_init__(self) -> None:
        lo, hi = self.switch_s
        if not 0.0 < lo <= hi:
            raise ValueError(f"switch_s: got {self.switch_s}; allowed: 0 < low <= high (s)")
        if self.latency_s <= 0:
            raise ValueError(f"latency_s: got {self.latency_s}; allowed: > 0")


def record_recovery(sim, policy, seed: int, image_size: tuple[int, int],
                    recovery: Recovery) -> EpisodeRecord:
    """One recovery episode (`Recovery`) on `sim` with `policy` (a loaded runtime Policy)."""
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.rollout import stack_rollout

    start = time.perf_counter()
    switch = float(np.random.default_rng([seed, 1]).uniform(*recovery.switch_s))
    first = sim.task.phases[0]
    run = stack_rollout(sim, policy, seed, scheduler=recovery.scheduler,
                        latency_s=recovery.latency_s, latency_p99_s=recovery.latency_p99_s,
                        timeout=switch, stop=lambda status: status.phase != first)
    if run.success or run.phase != first:
        return EpisodeRecord(seed, False, f"policy reached {run.phase!r} before the switch at "
                             f"{switch:.1f} s", sim.task.instruction,
                             seconds=time.perf_counter() - start)
    return _expert_takes_over(sim, make_expert(sim), _Recorder(sim, image_size), seed, start,
                              {"recovery_from": recovery.checkpoint,
                               "switch_s": round(switch, 3)})


def _expert_takes_over(sim, expert, recorder: _Recorder, seed: int, start: float,
                       source: dict) -> EpisodeRecord:
    """The expert plans from the simulator's present state (measured joints, the objects
    where they are now) and finishes the task, every step recorded by `recorder`; `source`
    adds to the episode's index entry. `start`: the attempt's perf_counter start."""
    from wam_ros.sim.expert_rollout import execute_plan
    from wam_ros.sim.planning import PlanningError

    def skipped(reason: str) -> EpisodeRecord:
        return EpisodeRecord(seed, False, reason, sim.task.instruction,
                             seconds=time.perf_counter() - start)

    try:
        plan = expert.plan(sim.object_poses(), start=sim.joint_positions())
    except PlanningError as exc:
        return skipped(f"planning: {exc}")
    status = execute_plan(sim, plan, on_step=recorder)
    if not status.success:
        return skipped(f"task not solved (phase {status.phase})")
    return recorder.record(seed, sim.task.instruction, time.perf_counter() - start,
                           {"seed": seed, "expert": sim.task.name, **source})


@dataclass(frozen=True)
class Disturbance:
    """Disturbed expert episodes (pick_place; DART's idea, Laskey et al. 2017, with the
    disturbance where a policy errs): the expert approaches a pre-grasp pose that is off by an
    error drawn from the episode's seed — horizontally uniform in a disc of `lateral_m`,
    vertically uniform in +-`vertical_m`, in yaw uniform in +-`yaw_rad` — and its descent
    corrects the error on the way to the true grasp. Only the correction onwards is recorded
    (from the first frame of the descent): the wrong approach is not a label, the states it
    leads to are. A policy whose approach ends a few centimetres off (G1's end 2-4 cm off,
    then descend along the gripper's axis onto the cube's edge) learns from these to steer
    the descent to the cube it sees.

    `distance_m` (late disturbances): the hand reaches the true pre-grasp first and is then
    put off by the error that close to the cube (along the gripper's axis), where a G1 policy
    that failed ended its descent 2-3 cm off and closed there; the shorter descent from there
    is what is recorded. None: the pre-grasp itself is off."""

    lateral_m: float = 0.035
    vertical_m: float = 0.015
    yaw_rad: float = 0.15
    distance_m: float | None = None

    def __post_init__(self) -> None:
        values = (self.lateral_m, self.vertical_m, self.yaw_rad)
        if not all(np.isfinite(v) and v >= 0 for v in values) or not any(values):
            raise ValueError(f"disturbance: got lateral {self.lateral_m} m, vertical "
                             f"{self.vertical_m} m, yaw {self.yaw_rad} rad; allowed: >= 0, "
                             f"not all 0")
        if self.distance_m is not None:
            from wam_ros.sim.experts import PickPlaceExpert

            top = PickPlaceExpert.approach_height
            if not (np.isfinite(self.distance_m) and 0 < self.distance_m < top):
                raise ValueError(f"disturbance distance: got {self.distance_m} m; allowed: "
                                 f"0 .. {top} m (the pre-grasp's), exclusive")

    def draw(self, seed: int) -> np.ndarray:
        """The episode's pre-grasp error (dx, dy, dz, dyaw)."""
        rng = np.random.default_rng([seed, 2])
        radius = self.lateral_m * np.sqrt(rng.uniform())  # uniform over the disc
        angle = rng.uniform(-np.pi, np.pi)
        return np.array([radius * np.cos(angle), radius * np.sin(angle),
                         rng.uniform(-self.vertical_m, self.vertical_m),
                         rng.uniform(-self.yaw_rad, self.yaw_rad)])


def record_disturbed(sim, seed: int, image_size: tuple[int, int],
                     disturbance: Disturbance) -> EpisodeRecord:
    """One disturbed expert episode (`Disturbance`) on `sim`, recorded from its descent on."""
    from wam_ros.sim.expert_rollout import execute_plan
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.planning import Plan, PlanningError

    start = time.perf_counter()
    sim.reset(seed)
    error = disturbance.draw(seed)
    try:
        expert = make_expert(sim)
        plan = expert.plan(sim.object_poses(), pregrasp_error=error,
                           pregrasp_distance=disturbance.distance_m)
    except PlanningError as exc:
        return EpisodeRecord(seed, False, f"planning: {exc}", sim.task.instruction,
                             seconds=time.perf_counter() - start)
    cut = plan.phases.index("descend")
    execute_plan(sim, Plan(plan.actions[:cut], plan.phases[:cut]))
    recorder = _Recorder(sim, image_size)
    status = execute_plan(sim, Plan(plan.actions[cut:], plan.phases[cut:]), on_step=recorder)
    if not status.success:
        return EpisodeRecord(seed, False, f"task not solved (phase {status.phase})",
                             sim.task.instruction, seconds=time.perf_counter() - start)
    return recorder.record(seed, sim.task.instruction, time.perf_counter() - start,
                           {"seed": seed, "expert": sim.task.name,
                            "pregrasp_error": [round(float(v), 4) for v in error],
                            **({"pregrasp_distance": disturbance.distance_m}
                               if disturbance.distance_m is not None else {}),
                            "from_s": round(cut * sim.robot.action_dt, 3)})


@dataclass(frozen=True)
class Miss:
    """Missed-grasp episodes (pick_place): the expert aims its approach, descent and grasp at
    a point off the cube, drawn from the episode's seed — half the episodes beside it (a
    horizontal offset of 0.75-1.25 x `lateral_m` in any direction), half above it (0.75-1.25 x
    `high_m` up, within 1 cm sideways) — and closes the gripper on nothing there. From that
    state, with the cube where the miss left it, the expert plans a recovery (rise, open,
    approach, descend, grasp) and finishes the task; only the recovery is recorded. Traced
    through the runtime, G1 policies that closed beside or above the cube kept the empty
    gripper closed for seconds, having never seen that state; these episodes show it and what
    to do from it. Attempts where the miss still grasped, or moved the cube off the table,
    are skipped. The recovery rises before it opens the gripper, as a lift after a good grasp
    does; with `open_first` the recording starts by opening the gripper where it closed."""

    lateral_m: float = 0.035
    high_m: float = 0.045
    open_first: bool = False

    def __post_init__(self) -> None:
        if not all(np.isfinite(v) and v > 0 for v in (self.lateral_m, self.high_m)):
            raise ValueError(f"miss: got lateral {self.lateral_m} m, high {self.high_m} m; "
                             "allowed: > 0")

    def draw(self, seed: int) -> np.ndarray:
        """The episode's grasp error (dx, dy, dz)."""
        rng = np.random.default_rng([seed, 3])
        angle = rng.uniform(-np.pi, np.pi)
        if rng.uniform() < 0.5:  # beside
            radius = self.lateral_m * rng.uniform(0.75, 1.25)
            return np.array([radius * np.cos(angle), radius * np.sin(angle), 0.0])
        radius = 0.01 * np.sqrt(rng.uniform())
        return np.array([radius * np.cos(angle), radius * np.sin(angle),
                         self.high_m * rng.uniform(0.75, 1.25)])


def record_missed(sim, seed: int, image_size: tuple[int, int], miss: Miss) -> EpisodeRecord:
    """One missed-grasp episode (`Miss`) on `sim`, recorded from the missed grasp on."""
    from wam_ros.sim.expert_rollout import execute_plan
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.planning import OPEN, Plan, PlanBuilder, PlanningError

    start = time.perf_counter()
    sim.reset(seed)
    error = miss.draw(seed)

    def skipped(reason: str) -> EpisodeRecord:
        return EpisodeRecord(seed, False, reason, sim.task.instruction,
                             seconds=time.perf_counter() - start)

    try:
        expert = make_expert(sim)
        plan = expert.plan(sim.object_poses(), grasp_error=error)
    except PlanningError as exc:
        return skipped(f"planning: {exc}")
    cut = plan.phases.index("lift")  # approach, descent and the closed gripper's hold
    execute_plan(sim, Plan(plan.actions[:cut], plan.phases[:cut]))
    if any(sim.task.held(sim.data).values()):
        return skipped("grasped despite the miss")
    if not sim.task.on_table(sim.data):
        return skipped("the miss moved the cube off the table")
    recorder = _Recorder(sim, image_size)
    if miss.open_first:
        opening = PlanBuilder(sim.scene, expert.ik, sim.joint_positions())
        opening.segment("approach", {expert.arm: ("grip", OPEN)})
        execute_plan(sim, opening.build(), on_step=recorder)
    return _expert_takes_over(sim, expert, recorder, seed, start,
                              {"grasp_error": [round(float(v), 4) for v in error],
                               "open_first": miss.open_first,
                               "from_s": round(cut * sim.robot.action_dt, 3)})


def object_columns(task: str) -> tuple[str, ...]:
    """Names of the columns record_episode writes for `task`'s objects."""
    from wam_ros.sim.tasks import task_class

    return tuple(f"{o}.{c}" for o in task_class(task).objects for c in ("x", "y", "z", "yaw"))


# ---- worker processes ----------------------------------------------------------------------
_worker: dict[str, object] = {}  # this process's simulator and image size


def _worker_init(robot: str, task: str, image_size: tuple[int, int],
                 variant: Recovery | Disturbance | Miss | None = None,
                 workers: int = 1) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from wam_ros.sim.mujoco_sim import Simulator

    _worker["sim"] = Simulator(robot, task)
    _worker["size"] = image_size
    _worker["variant"] = variant
    if isinstance(variant, Recovery):
        import torch

        from wam_ros.runtime import load_policy

        if workers > 1:
            # a share of the cores each: inference threads outnumbering the cores spin against
            # each other (on 2 cores, a G1 rollout beside another 2-thread process took 33-45 s
            # per episode against 6.6 s alone)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        _worker["policy"] = load_policy(variant.checkpoint, backend=variant.backend)


def _worker_run(seed: int) -> EpisodeRecord:
    variant = _worker["variant"]
    if variant is None:
        return record_episode(_worker["sim"], seed, _worker["size"])
    if isinstance(variant, Disturbance):
        return record_disturbed(_worker["sim"], seed, _worker["size"], variant)
    if isinstance(variant, Miss):
        return record_missed(_worker["sim"], seed, _worker["size"], variant)
    return record_recovery(_worker["sim"], _worker["policy"], seed, _worker["size"], variant)


def _records(robot: str, task: str, image_size: tuple[int, int], seeds: Iterator[int],
             workers: int, variant: Recovery | Disturbance | Miss | None = None,
             ) -> Iterator[EpisodeRecord]:
    """Episode records in seed order, from this process or a pool of `workers` processes."""
    if workers <= 1:
        _worker_init(robot, task, image_size, variant)
        try:
            for seed in seeds:
                yield _worker_run(seed)
        finally:
            _worker.pop("policy", None)
            _worker.pop("sim").close()
        return
    # spawn: a forked EGL context is not usable in the child
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init,
                  initargs=(robot, task, image_size, variant, workers)) as pool:
        yield from pool.imap(_worker_run, seeds)


def generate_dataset(robot: str, task: str, episodes: int, out: str | Path,
                     image_size: tuple[int, int] = (96, 96), seed: int = 0, workers: int = 1,
                     max_attempts: int | None = None, progress: bool = True,
                     recovery: Recovery | None = None,
                     disturbance: Disturbance | None = None,
                     miss: Miss | None = None, image_format: str = "raw"
                     ) -> GenerationReport:
    """Write `episodes` successful expert episodes to the dataset at `out` (created or
    appended to); returns counts and speed. With `recovery`, recovery episodes from that
    checkpoint's states instead (`Recovery`); with `disturbance`, disturbed expert episodes
    (`Disturbance`); with `miss`, missed-grasp episodes (`Miss`). `image_format`: raw or
    jpeg (docs/dataset.md)."""
    from wam_ros.core.robot import RobotSpec
    from wam_ros.sim.tasks import task_class

    spec = RobotSpec.load(robot)
    instruction = task_class(task).instruction
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    variants = [v for v in (recovery, disturbance, miss) if v is not None]
    if len(variants) > 1:
        raise ValueError("recovery, disturbance and missed-grasp episodes are made "
                         "separately: pass one")
    if variants and task != "pick_place":
        raise ValueError(f"recovery, disturbance and missed-grasp episodes are for "
                         f"pick_place, not {task!r}")
    # a recovery attempt is skipped too where the policy is past the first phase in time
    max_attempts = max_attempts or (4 if isinstance(recovery, Recovery) else 2) * episodes + 10
    info = DatasetInfo(spec.name, tuple(spec.action_layout), tuple(spec.camera_names),
                       (int(image_size[0]), int(image_size[1])), spec.action_dt,
                       object_columns(task), image_format)
    writer = DatasetWriter(out, info)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=f"{robot}/{task}", unit="ep")
    written = frames = 0
    failed: list[int] = []
    kinds: Counter[str] = Counter()
    start = time.perf_counter()
    seeds = iter(range(seed, seed + max_attempts))
    records = _records(spec.name, task, info.image_size, seeds, workers,
                       variants[0] if variants else None)
    try:
        for rec in records:
            if not rec.success:
                failed.append(rec.seed)
                kinds[failure_kind(rec.reason)] += 1
                if bar is not None:
                    bar.set_postfix(failed=len(failed))
                continue
            with writer.new_episode(task=instruction, source=rec.source) as ep:
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
                            time.perf_counter() - start, str(out), dict(kinds))


def failure_kind(reason: str) -> str:
    """A failed episode's reason without its details ("planning", "task not solved", ...)."""
    return re.split(r":| \(| before", reason, maxsplit=1)[0]


__all__ = ["Disturbance", "EpisodeRecord", "GenerationReport", "Miss", "Recovery",
           "failure_kind", "generate_dataset", "record_disturbed", "record_episode",
           "record_missed", "record_recovery"]
