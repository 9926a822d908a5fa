"""When to run inference: the sync | async | sai schedulers (DESIGN.md, async chunk execution).

Pure classes, time passed in. The policy runner calls `decide` whenever something changed (a
control tick, an observation, an inference finishing) and acts on the `Decision`; it reports what
it did through the `on_*` methods, which also feed the per-scheduler statistics:

- blocking latency: arrival of the observation an inference used -> its chunk ready. This is
  the delay the model adds between seeing the world and acting on it.
- idle fraction: share of control time the arm holds for lack of plan (counted from the first
  chunk, so start-up is not charged to the scheduler).

Algorithms, with L the expected latency of a full inference and H the expected hand-off (chunk
ready -> executed by the smoother, plus an allowance for the latency's spread; the runner learns
both, see runtime.chunk_runner):

- sync: start when the plan is exhausted and the arm holds; the chunk (optionally only its first
  `execute_actions` actions) is re-timed to start when it arrives, because the robot waited. The
  arm idles for L every chunk.
- async: start on the newest observation once the remaining plan <= L + H + margin, so the next
  chunk is executing before the current one runs out; no idling while L + H < chunk duration.
  An observation arriving less than a camera period before that trigger starts it at once
  (`AsyncScheduler`): the observation the trigger would have taken, used on arrival instead of
  after waiting up to a period.
- sai (speculative asynchronous inference, CLWM): once a chunk has been handed off (the
  smoother reports it executing, or the hand-off allowance H has passed since it was ready),
  start the speculative part (flow ODE from s=0 to s_mid on a surrogate context built from the
  model's predicted latent and the last plan, standing for the completion's observation; no
  observation needed). Started at once, it would take the CPU from the chunk's own way to the
  arm. Once it is done and the remaining plan <= (1 - f) L + H + margin,
  complete (s_mid -> 1) on the next observation to arrive. Only the completion blocks: about
  (1 - f) L.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import ClassVar

import numpy as np

from wam_ros.core.settings import SCHEDULERS
from wam_ros.core.types import Chunk


class Decision(str, Enum):
    WAIT = "wait"
    START = "start"  # full inference on the newest observation
    SPECULATE = "speculate"  # sai: speculative first part, no observation needed
    COMPLETE = "complete"  # sai: finish the speculated inference with the newest observation


@dataclass(frozen=True)
class SchedulerConfig:
    """margin_s: slack added to the expected latency in the async/sai triggers (should cover an
        observation period for sai, which waits for the next observation).
    execute_actions: sync only: execute the first E actions of each chunk (0 = all).
    speculative_fraction: sai only: share f of the flow steps integrated speculatively.
    """

    margin_s: float = 0.05
    execute_actions: int = 0
    speculative_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not (np.isfinite(self.margin_s) and self.margin_s >= 0.0):
            raise ValueError(
                f"SchedulerConfig.margin_s: got {self.margin_s!r}; allowed: >= 0 seconds"
            )
        if not isinstance(self.execute_actions, int) or self.execute_actions < 0:
            raise ValueError(
                f"SchedulerConfig.execute_actions: got {self.execute_actions!r}; allowed: "
                "int >= 0 (0 = the whole chunk)"
            )
        if not (np.isfinite(self.speculative_fraction)
                and 0.0 <= self.speculative_fraction < 1.0):
            raise ValueError(
                f"SchedulerConfig.speculative_fraction: got {self.speculative_fraction!r}; "
                "allowed: 0 <= f < 1"
            )


class Scheduler:
    """Base: statistics and the runner-facing callbacks; subclasses implement `decide`.

    Not locked: the policy runner owns its scheduler and serialises the calls (decide and the
    on_* callbacks from one thread, or under the runner's own lock).
    """

    name: ClassVar[str] = ""
    plans_while_moving: ClassVar[bool] = True  # the arm runs the last chunk while it plans

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.reset_stats()
        self._pending_arrival: float | None = None  # arrival of the observation in flight

    # ---- decisions ---------------------------------------------------------------------
    def decide(self, now: float, *, remaining: float, in_flight: bool,
               expected_latency: float, arm_settled: bool = True,
               handoff: float = 0.0) -> Decision:
        """remaining: seconds of plan left; in_flight: an inference (or speculation) runs;
        expected_latency: seconds of a full inference; arm_settled: the arm is at rest;
        handoff: seconds from a chunk being ready to its execution (H above)."""
        raise NotImplementedError

    def prepare_chunk(self, chunk: Chunk, now: float) -> Chunk:
        """Adjust a freshly inferred chunk before splicing (identity except for sync)."""
        return chunk

    # ---- runner callbacks --------------------------------------------------------------
    def on_observation(self, now: float) -> None:
        """An observation arrived at `now`."""

    def on_inference_started(self, now: float, kind: Decision,
                             observation_arrival: float | None) -> None:
        """kind: START / SPECULATE / COMPLETE; observation_arrival: when the observation the
        inference uses arrived (None for SPECULATE, which uses none)."""
        if kind is Decision.WAIT:
            raise ValueError("on_inference_started: kind WAIT is not an inference")
        self.inferences += 1
        if kind is not Decision.SPECULATE:
            self._pending_arrival = observation_arrival

    def on_speculation_ready(self, now: float) -> None:
        """sai: the speculative part finished."""

    def on_chunk_ready(self, now: float) -> None:
        """The chunk of the last START/COMPLETE is ready (decoded, about to be spliced)."""
        if self._pending_arrival is not None:
            self.blocking_latencies.append(now - self._pending_arrival)
        self._pending_arrival = None
        self.chunks += 1

    def on_spliced(self, now: float) -> None:
        """The chunk was accepted by the timeline."""
        if self._first_chunk_at is None:
            self._first_chunk_at = now

    def on_chunk_applied(self, now: float) -> None:
        """The newest chunk reached the arm: the smoother executes it (its hand-off is over)."""

    def on_tick(self, now: float, idle: bool) -> None:
        """A control tick; idle: the arm holds for lack of plan. The interval since the last
        tick is charged to the state seen now."""
        if self._first_chunk_at is not None and self._last_tick is not None:
            interval = max(0.0, now - max(self._last_tick, self._first_chunk_at))
            self._total_time += interval
            if idle:
                self._idle_time += interval
        self._last_tick = now

    # ---- statistics --------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.blocking_latencies: list[float] = []
        self.inferences = 0
        self.chunks = 0
        self._idle_time = 0.0
        self._total_time = 0.0
        self._last_tick: float | None = None
        self._first_chunk_at: float | None = None

    @property
    def idle_fraction(self) -> float:
        return self._idle_time / self._total_time if self._total_time > 0.0 else 0.0

    def stats(self) -> dict[str, float | int | str]:
        lat = np.asarray(self.blocking_latencies)
        pct = (lambda q: float(np.percentile(lat, q) * 1e3)) if lat.size else (lambda q: 0.0)
        return {
            "scheduler": self.name,
            "inferences": self.inferences,
            "chunks": self.chunks,
            "blocking_latency_ms.p50": pct(50),
            "blocking_latency_ms.p99": pct(99),
            "blocking_latency_ms.mean": float(lat.mean() * 1e3) if lat.size else 0.0,
            "idle_fraction": self.idle_fraction,
            "idle_s": self._idle_time,
            "observed_s": self._total_time,
        }


class SyncScheduler(Scheduler):
    name = "sync"
    plans_while_moving = False  # the arm holds while it plans

    def decide(self, now: float, *, remaining: float, in_flight: bool,
               expected_latency: float, arm_settled: bool = True,
               handoff: float = 0.0) -> Decision:
        if in_flight or remaining > 0.0 or not arm_settled:
            return Decision.WAIT
        return Decision.START

    def prepare_chunk(self, chunk: Chunk, now: float) -> Chunk:
        """First E actions only, re-timed to start at `now`: the robot waited for this chunk,
        so none of it is stale (dropping its head, as async must, would skip motion). Pass
        now + the timeline's drop margin when that margin is not 0."""
        actions = chunk.actions
        if self.config.execute_actions:
            actions = actions[: self.config.execute_actions]
        return replace(chunk, actions=actions, start_offset=max(chunk.start_offset,
                                                               now - chunk.stamp))


class AsyncScheduler(Scheduler):
    """async, starting each plan as soon as the observation it will use arrives.

    The trigger (remaining plan <= L + H + margin) falls at a fixed time after the last
    chunk's observation, so at a fixed phase of the camera's period: started there, every plan
    would use an observation of the same age, anything up to a camera period, which depends
    on L + H + margin mod the period (the pipeline bench measured a median wait of 9.5 ms one
    day and 28.5 ms another). Instead, when an observation arrives and the trigger would hold
    before the next one is due (remaining <= L + H + margin + P, P the median interval between
    the last observations), start now on it, up to P before the trigger (at most
    `max_early_s`: a slow camera does not move the plan much earlier). The plain trigger stays
    as the fallback (no period known yet, a frame missing).
    """

    name = "async"
    max_early_s: ClassVar[float] = 0.1

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self._fresh = False  # an observation arrived since the last decision
        self._last_observation: float | None = None
        self._intervals: deque[float] = deque(maxlen=15)

    @property
    def observation_period(self) -> float:
        """Median interval between the last observations (0 until two arrived)."""
        return float(np.median(self._intervals)) if self._intervals else 0.0

    def on_observation(self, now: float) -> None:
        if self._last_observation is not None and now > self._last_observation:
            self._intervals.append(now - self._last_observation)
        self._last_observation = now
        self._fresh = True

    def decide(self, now: float, *, remaining: float, in_flight: bool,
               expected_latency: float, arm_settled: bool = True,
               handoff: float = 0.0) -> Decision:
        fresh, self._fresh = self._fresh, False
        lead = expected_latency + handoff + self.config.margin_s
        early = min(self.observation_period, self.max_early_s) if fresh else 0.0
        if in_flight or remaining > lead + early:
            return Decision.WAIT
        return Decision.START


class SpeculativeScheduler(Scheduler):
    """sai; phases: need speculation -> speculating -> speculated (armed on trigger) ->
    completing -> (chunk spliced) need speculation."""

    name = "sai"

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self._phase = "idle"  # idle | speculating | speculated | completing
        self._fresh_observation = False
        self._armed = False
        self._have_chunk = False
        self._ready_at = -np.inf  # when the last chunk was ready
        self._handed_off = True  # ... and whether the smoother has reported it executing

    def decide(self, now: float, *, remaining: float, in_flight: bool,
               expected_latency: float, arm_settled: bool = True,
               handoff: float = 0.0) -> Decision:
        if in_flight:
            return Decision.WAIT
        if not self._have_chunk:
            # Nothing to speculate from yet (no predicted latent): plain first inference.
            return Decision.START if self._phase == "idle" else Decision.WAIT
        if self._phase == "idle":
            # not while the chunk is on its way to the arm (decoder, smoother: the same CPU)
            if self._handed_off or now >= self._ready_at + handoff:
                return Decision.SPECULATE
            return Decision.WAIT
        if self._phase == "speculated":
            if remaining <= self.completion_lead(expected_latency, handoff):
                if self._armed and self._fresh_observation:
                    return Decision.COMPLETE
                self._armed = True
        return Decision.WAIT

    def completion_lead(self, expected_latency: float, handoff: float) -> float:
        """Plan left when the completion triggers: (1 - f) L + H + margin."""
        return ((1.0 - self.config.speculative_fraction) * expected_latency + handoff
                + self.config.margin_s)

    def on_observation(self, now: float) -> None:
        # Only an observation arriving once the trigger holds counts as "the next
        # observation": completing on one that had already waited would add its age to the
        # blocking latency. The wait (< one camera period) is what margin_s must cover.
        if self._armed:
            self._fresh_observation = True

    def on_inference_started(self, now: float, kind: Decision,
                             observation_arrival: float | None) -> None:
        super().on_inference_started(now, kind, observation_arrival)
        self._phase = {Decision.START: "completing", Decision.SPECULATE: "speculating",
                       Decision.COMPLETE: "completing"}[kind]
        self._fresh_observation = False
        self._armed = False

    def on_speculation_ready(self, now: float) -> None:
        if self._phase != "speculating":
            raise RuntimeError(f"on_speculation_ready in phase {self._phase!r}")
        self._phase = "speculated"

    def on_chunk_ready(self, now: float) -> None:
        super().on_chunk_ready(now)
        self._phase = "idle"
        self._ready_at, self._handed_off = now, False

    def on_chunk_applied(self, now: float) -> None:
        self._handed_off = True

    def on_spliced(self, now: float) -> None:
        super().on_spliced(now)
        self._have_chunk = True


SCHEDULER_CLASSES: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (SyncScheduler, AsyncScheduler, SpeculativeScheduler)
}
assert tuple(SCHEDULER_CLASSES) == SCHEDULERS, "core.settings.SCHEDULERS names these classes"


def make_scheduler(name: str, config: SchedulerConfig | None = None) -> Scheduler:
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {', '.join(SCHEDULERS)}")
    return SCHEDULER_CLASSES[name](config)


@dataclass(frozen=True)
class SimulationResult:
    stats: dict[str, float | int | str]
    max_boundary_jump: float  # largest |new action - old plan| absorbed by a splice
    rejected: int  # chunks the timeline refused


def simulate(scheduler: Scheduler, *, latency_s: float, horizon: int, action_dt: float,
             control_dt: float, observation_dt: float, duration_s: float) -> SimulationResult:
    """Event-driven fake-clock run of a scheduler against an ActionTimeline.

    The "model" returns, after `latency_s` (split f / 1-f for sai), a chunk of `horizon`
    actions sampled from a fixed smooth trajectory at the chunk's own action times, so any
    timing mistake shows up as a boundary jump or as idle time. Useful to check a scheduler's
    behaviour and as a model-free baseline for the pipeline bench.
    """
    from wam_ros.core.timeline import ActionTimeline, TimelineConfig

    timeline = ActionTimeline(1, TimelineConfig(blend="crossfade", crossfade_s=0.0))
    f = scheduler.config.speculative_fraction if isinstance(
        scheduler, SpeculativeScheduler) else 0.0
    next_tick, next_obs = 0.0, 0.0
    newest_obs: float | None = None  # arrival == stamp: no transport delay in the fake
    job: tuple[Decision, float, float | None] | None = None  # kind, finish time, obs stamp
    max_jump, rejected, chunk_id = 0.0, 0, 0
    while True:
        now = min(next_tick, next_obs, job[1] if job else np.inf)
        if now > duration_s:
            break
        if now == next_obs:
            newest_obs = now
            scheduler.on_observation(now)
            next_obs += observation_dt
        if job is not None and now == job[1]:
            kind, _, obs_stamp = job
            job = None
            if kind is Decision.SPECULATE:
                scheduler.on_speculation_ready(now)
            else:
                assert obs_stamp is not None
                chunk_id += 1
                times = obs_stamp + action_dt * np.arange(horizon)
                chunk = Chunk(stamp=obs_stamp, actions=np.sin(times)[:, None].astype(np.float32),
                              dt=action_dt, chunk_id=chunk_id)
                chunk = scheduler.prepare_chunk(chunk, now)
                scheduler.on_chunk_ready(now)
                result = timeline.splice(chunk, now)
                if result.accepted:
                    scheduler.on_spliced(now)
                    max_jump = max(max_jump, result.boundary_jump)
                else:
                    rejected += 1
        if now == next_tick:
            scheduler.on_tick(now, idle=timeline.remaining(now) <= 0.0)
            next_tick += control_dt
        decision = scheduler.decide(now, remaining=timeline.remaining(now),
                                    in_flight=job is not None, expected_latency=latency_s)
        if decision is Decision.SPECULATE:
            scheduler.on_inference_started(now, decision, None)
            job = (decision, now + f * latency_s, None)
        elif decision in (Decision.START, Decision.COMPLETE) and newest_obs is not None:
            scheduler.on_inference_started(now, decision, newest_obs)
            share = 1.0 - f if decision is Decision.COMPLETE else 1.0
            job = (decision, now + share * latency_s, newest_obs)
    return SimulationResult(scheduler.stats(), max_jump, rejected)


__all__ = [
    "SCHEDULER_CLASSES", "AsyncScheduler", "Decision", "Scheduler", "SchedulerConfig",
    "SimulationResult", "SpeculativeScheduler", "SyncScheduler", "make_scheduler", "simulate",
]
