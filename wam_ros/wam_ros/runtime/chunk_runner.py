"""Drives a policy with a scheduler: what the policy node, the pipeline bench and offline replay
share (ROS-free, time passed in).

The caller feeds observations and control ticks; `poll` says which inference to run (if any) and
hands out a `Job`; the caller runs `execute(job)` wherever it likes (the policy node: a worker
thread, so inference never blocks a callback; replay: inline on a simulated clock) and returns
the result through `finish`, which applies the scheduler's bookkeeping and yields the chunk to
publish. A job started before a `reset` is discarded when it finishes.

Latency, learned on the caller's clock (node time: sim time on a simulated robot):
- L, a full inference: handed out -> finished, per job (a SAI completion counts for its share),
  which includes any wait for the worker;
- H, the hand-off: finished -> executed, from `on_chunk_applied` (the smoother reports when it
  spliced each chunk: the decoder and the smoother's transport and wake-ups in the graph);
- their spread: mean absolute deviations, as TCP's retransmission timer keeps one (Jacobson).
The schedulers plan ahead by L + H + `latency_deviations` x spread (default 0: the mean only)
+ the late allowance: a chunk spliced after the plan before it had ended (the arm held for the
difference) adds that lateness to it, and each chunk on time takes `late_decay` of it away
(`late_feedback`; async and sai; at most half a chunk), so a latency tail the mean misses
stops idling the arm without planning every chunk ahead by the worst case.
Compute time alone misses most of it on a loaded machine: in the multi-process graph on 2 cores
(CobotMagic demo) inference took ~18 ms p50 of wall time, while an observation's plan reached
its first command ~90 ms after the camera stamp, ~28 ms of that after the chunk was published.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from wam_ros.core.types import Chunk, Observation
from wam_ros.runtime.scheduler import (
    Decision,
    Scheduler,
    SchedulerConfig,
    SpeculativeScheduler,
    make_scheduler,
)

# stages of a plan's blocking part a policy may time (Chunk.extras["<part>_s"]); the runner's
# statistics report each as <part>_ms.p50 / .p99
PLAN_PARTS = ("encode", "context", "flow")


class ChunkPolicy(Protocol):
    """`prefix_s` (passed only when the runner inpaints): how long after the observation the
    robot still executes the previous chunk; see `Policy.infer`."""

    def infer(self, obs: Observation, prefix_s: float = 0.0) -> Chunk: ...
    def speculate(self, s_mid: float = 0.5, at: float | None = None) -> Any: ...
    def complete(self, handle: Any, obs: Observation, prefix_s: float = 0.0) -> Chunk: ...
    def reset(self) -> None: ...


@dataclass
class Job:
    kind: Decision  # START | SPECULATE | COMPLETE
    episode: int
    started: float  # runner time when handed out
    observation: Observation | None = None
    arrival: float | None = None  # when that observation arrived
    handle: Any = None  # sai: the speculation a COMPLETE finishes
    expected_observation: float | None = None  # sai SPECULATE: when its completion's is due


@dataclass
class JobResult:
    job: Job
    chunk: Chunk | None = None
    handle: Any = None
    error: str = ""
    compute_s: float = 0.0  # wall seconds the policy call took


class ChunkRunner:
    def __init__(self, policy: ChunkPolicy, scheduler: Scheduler, *,
                 max_observation_age: float = 0.5, initial_latency: float = 0.1,
                 latency_smoothing: float = 0.3, inpaint: bool = False,
                 latency_deviations: float = 0.0, late_feedback: bool = True,
                 late_decay: float = 0.1, max_future: float = 0.5) -> None:
        """inpaint: with a scheduler that plans while the robot moves (async, sai), ask the
        policy to keep the new chunk's actions up to the expected arrival equal to the
        previous chunk's (real-time chunking's frozen prefix).
        latency_deviations: how many mean deviations of the latency the schedulers plan
        ahead beyond its mean (module docstring).
        late_feedback, late_decay: the late allowance (module docstring).
        max_future: observations stamped more than this after `now` are refused."""
        self.policy = policy
        self.scheduler = scheduler
        self.inpaint = inpaint
        self.max_observation_age = max_observation_age
        self.max_future = max_future
        self.expected_latency = initial_latency  # L: seconds of a full inference (EMA)
        self.latency_dev = 0.0  # its mean absolute deviation (EMA)
        self.expected_handoff = 0.0  # H: chunk finished -> executed (EMA; 0 until reported)
        self.handoff_dev = 0.0
        self.latency_deviations = latency_deviations
        self.late_feedback = late_feedback
        self.late_decay = late_decay
        self.late_allowance = 0.0  # seconds (module docstring)
        self.late_chunks = 0  # chunks spliced after the plan before them had ended
        self._chunk_s = 0.0  # duration of the last chunk handed out
        self._alpha = latency_smoothing
        # finished chunks awaiting on_chunk_applied: observation stamp -> (finish time, end of
        # the plan the chunk follows)
        self._finished_at: OrderedDict[float, tuple[float, float]] = OrderedDict()
        self._handoffs_seen = 0
        self._lock = threading.Lock()
        self._newest: tuple[Observation, float] | None = None  # observation, arrival
        self._handle: Any = None  # sai: finished speculation waiting for an observation
        self._plan_end = -np.inf  # time of the last action handed out
        self.in_flight: Job | None = None
        self._reset_pending = False  # reset asked while a job ran: reset when it is back
        self._not_before = -np.inf  # observations stamped earlier belong to a past episode
        self.episode = 0
        self.paused = False  # no inference while paused (between episodes)
        self.refusals: Counter[str] = Counter()
        # recent inference times for the statistics (bounded: a node runs for days)
        self.compute_times: deque[float] = deque(maxlen=200)
        # the blocking part of each plan by stage (Policy: encoder, context pass, flow steps
        # after any speculation): what sai cannot speculate, and what it can
        self.part_times: dict[str, deque[float]] = {p: deque(maxlen=200) for p in PLAN_PARTS}

    @classmethod
    def from_settings(cls, policy: ChunkPolicy, settings: Any,
                      initial_latency: float) -> ChunkRunner:
        """The runner the policy node builds from its PolicySettings (scheduler, margins,
        SAI split, observation age)."""
        scheduler = make_scheduler(settings.scheduler, SchedulerConfig(
            margin_s=settings.latency_margin_s, execute_actions=settings.execute_steps,
            speculative_fraction=settings.sai_s_mid))
        return cls(policy, scheduler,
                   max_observation_age=settings.max_observation_age_s,
                   initial_latency=initial_latency, inpaint=settings.inpaint_prefix,
                   latency_deviations=settings.latency_deviations,
                   late_feedback=settings.late_feedback,
                   max_future=settings.max_future_s)

    @property
    def s_mid(self) -> float:
        """sai: the share of the flow speculated, the scheduler's (its trigger and the
        runner's split of each plan must agree)."""
        return self.scheduler.config.speculative_fraction

    # ---- inputs -------------------------------------------------------------------------
    def on_observation(self, obs: Observation, now: float) -> bool:
        """Take an observation as the newest; False (and a counted refusal) if it is from the
        future, of a past episode, or not newer than the newest."""
        with self._lock:
            if not obs.stamp - now <= self.max_future:  # NaN too
                self.refusals["observation_future"] += 1
                return False
            if obs.stamp < self._not_before:
                self.refusals["observation_before_episode"] += 1
                return False
            if self._newest is not None and obs.stamp <= self._newest[0].stamp:
                self.refusals["observation_out_of_order"] += 1
                return False
            self._newest = (obs, now)
            self.scheduler.on_observation(now)
            return True

    def on_chunk_applied(self, stamp: float, applied_at: float) -> None:
        """The smoother spliced the chunk of the observation stamped `stamp` at `applied_at`
        (same clock): one sample of the hand-off H."""
        with self._lock:
            # stamps cross messages as integer nanoseconds: float epoch seconds come back
            # within a microsecond, not bit-exact
            key = next((k for k in self._finished_at if abs(k - stamp) < 2e-6), None)
            if key is None:  # not ours, of an earlier episode, or reported twice
                return
            newest = key == next(reversed(self._finished_at))
            finished, previous_end = self._finished_at.pop(key)
            if newest:  # sai speculates the next chunk once this one is on the arm
                self.scheduler.on_chunk_applied(applied_at)
            self._learn_lateness(applied_at - previous_end)
            handoff = max(0.0, applied_at - finished)
            if self._handoffs_seen == 0:
                self.expected_handoff = handoff
            else:
                self.handoff_dev += self._alpha * (abs(handoff - self.expected_handoff)
                                                   - self.handoff_dev)
                self.expected_handoff += self._alpha * (handoff - self.expected_handoff)
            self._handoffs_seen += 1

    def _learn_lateness(self, late: float) -> None:
        """late > 0: the arm held that long between the plan's end and this chunk."""
        if not (self.late_feedback and self.scheduler.plans_while_moving
                and np.isfinite(late)):
            return
        if late > 0.0:
            self.late_chunks += 1
            # at most half a chunk: a stall (seconds) must not make every tick trigger
            self.late_allowance = min(self.late_allowance + late, 0.5 * self._chunk_s)
        else:
            self.late_allowance *= 1.0 - self.late_decay

    def lead_allowance(self) -> float:
        """H + the deviation allowance + the late allowance: what the schedulers plan ahead
        beyond L."""
        return (self.expected_handoff + self.late_allowance
                + self.latency_deviations * (self.latency_dev + self.handoff_dev))

    def remaining(self, now: float) -> float:
        return max(0.0, self._plan_end - now)

    def poll(self, now: float) -> Job | None:
        """Control tick: account idle time, ask the scheduler, hand out a job or None."""
        with self._lock:
            if self.paused:
                return None
            remaining = self.remaining(now)
            self.scheduler.on_tick(now, idle=remaining <= 0.0)
            decision = self.scheduler.decide(now, remaining=remaining,
                                             in_flight=self.in_flight is not None,
                                             expected_latency=self.expected_latency,
                                             handoff=self.lead_allowance())
            if decision is Decision.WAIT:
                return None
            if decision is Decision.SPECULATE:
                job = Job(Decision.SPECULATE, self.episode, now,
                          expected_observation=self._completion_observation())
                self.scheduler.on_inference_started(now, decision, None)
                self.in_flight = job
                return job
            if self._newest is None:
                return None
            obs, arrival = self._newest
            if now - obs.stamp > self.max_observation_age:
                self.refusals["observation_stale"] += 1
                return None
            job = Job(decision, self.episode, now, obs, arrival,
                      self._handle if decision is Decision.COMPLETE else None)
            if decision is Decision.COMPLETE and job.handle is None:
                decision = job.kind = Decision.START  # nothing speculated: plain inference
            self._newest = None  # each observation is used once
            self.scheduler.on_inference_started(now, decision, arrival)
            self.in_flight = job
            return job

    def _completion_observation(self) -> float | None:
        """sai: when the observation a completion will use is expected, on the runner's
        clock: the next one once the completion triggers (the policy's surrogate context
        stands for that instant)."""
        if not (isinstance(self.scheduler, SpeculativeScheduler)
                and np.isfinite(self._plan_end)):
            return None
        lead = self.scheduler.completion_lead(self.expected_latency, self.lead_allowance())
        return float(self._plan_end - lead)

    # ---- the slow part (any thread) -------------------------------------------------------
    def execute(self, job: Job) -> JobResult:
        t0 = time.perf_counter()
        try:
            if job.kind is Decision.SPECULATE:
                handle = self.policy.speculate(self.s_mid, at=job.expected_observation)
                return JobResult(job, handle=handle,
                                 compute_s=time.perf_counter() - t0)
            assert job.observation is not None
            options = {}
            if self.inpaint and self.scheduler.plans_while_moving:
                # the previous chunk runs on until this one executes: from the observation
                # to the expected end of this (remaining) inference and its hand-off
                share = 1.0 if job.kind is Decision.START else max(0.0, 1.0 - self.s_mid)
                options["prefix_s"] = max(0.0, job.started - job.observation.stamp
                                          + share * self.expected_latency
                                          + self.expected_handoff)
            chunk = (self.policy.complete(job.handle, job.observation, **options)
                     if job.kind is Decision.COMPLETE
                     else self.policy.infer(job.observation, **options))
            return JobResult(job, chunk=chunk, compute_s=time.perf_counter() - t0)
        except Exception as exc:  # a failing backend must not take the node down
            return JobResult(job, error=f"{type(exc).__name__}: {exc}",
                             compute_s=time.perf_counter() - t0)

    # ---- back on the runner's side ------------------------------------------------------
    def finish(self, result: JobResult, now: float) -> Chunk | None:
        """Bookkeeping for a finished job; the chunk to publish (None if there is none)."""
        job = result.job
        with self._lock:
            self.in_flight = None
            if self._reset_pending:  # the policy was busy when reset was asked
                self._reset_pending = False
                self.policy.reset()
            if job.episode != self.episode:
                self.refusals["result_of_previous_episode"] += 1
                return None
            if result.error:
                self.refusals["inference_failed"] += 1
                self._handle = None
                self.scheduler.on_chunk_ready(now)  # lets the scheduler try again
                return None
            if job.kind is Decision.SPECULATE:
                self._handle = result.handle
                self.scheduler.on_speculation_ready(now)
                return None
            assert result.chunk is not None
            self._handle = None
            share = 1.0 if job.kind is Decision.START else max(1e-3, 1.0 - self.s_mid)
            # on the caller's clock (waits for the worker included); compute time where that
            # clock did not move (a caller that finishes at the time it polled)
            elapsed = now - job.started
            full = (elapsed if elapsed > 0.0 else result.compute_s) / share
            self.latency_dev += self._alpha * (abs(full - self.expected_latency)
                                               - self.latency_dev)
            self.expected_latency += self._alpha * (full - self.expected_latency)
            self.compute_times.append(result.compute_s)
            for part, times in self.part_times.items():
                if f"{part}_s" in result.chunk.extras:
                    times.append(float(result.chunk.extras[f"{part}_s"]))
            # sync re-times the chunk to start when it is expected to execute
            chunk = self.scheduler.prepare_chunk(result.chunk, now + self.expected_handoff)
            self._finished_at[chunk.stamp] = (now, self._plan_end)
            self._chunk_s = len(chunk.actions) * chunk.dt
            while len(self._finished_at) > 64:
                self._finished_at.popitem(last=False)
            blocking = now - job.arrival if job.arrival is not None else 0.0
            chunk = replace(chunk, inference_time=result.compute_s, blocking_time=blocking)
            self.scheduler.on_chunk_ready(now)
            self.scheduler.on_spliced(now)
            self._plan_end = max(self._plan_end, float(chunk.times()[-1]))
            return chunk

    def reconfigure(self, margin_s: float, speculative_fraction: float) -> None:
        """Change the schedulers' margin and sai's speculated share while running (the policy
        node's live parameters latency_margin_s, sai_s_mid); kept across episodes."""
        with self._lock:
            self.scheduler.config = replace(self.scheduler.config, margin_s=margin_s,
                                            speculative_fraction=speculative_fraction)

    def pause(self) -> None:
        """Stop handing out jobs; a job in flight is discarded when it finishes (it belongs to
        the episode that ends here). `reset` starts the next episode and resumes."""
        with self._lock:
            self.paused = True
            self.episode += 1  # results of the ending episode are dropped

    def reset(self, now: float | None = None) -> None:
        """Episode start: memory cleared, plan forgotten, running (not paused); a job in
        flight is discarded. With `now`, observations stamped before it are refused: frames
        of the last episode's scene still in flight (camera buffers, the observation node's
        synchroniser) would otherwise be the new episode's first context."""
        with self._lock:
            self._not_before = -np.inf if now is None else float(now)
            self.paused = False
            self.episode += 1
            if self.in_flight is None:
                self.policy.reset()
            else:  # never reset memory under a running inference
                self._reset_pending = True
            self._newest = None
            self._handle = None
            self._plan_end = -np.inf
            self._finished_at.clear()  # the latency estimates carry over: same machine
            cls = type(self.scheduler)
            self.scheduler = cls(self.scheduler.config)

    def stats(self) -> dict[str, float | int | str]:
        out = dict(self.scheduler.stats())
        ct = np.asarray(self.compute_times)
        out["expected_latency_ms"] = self.expected_latency * 1e3
        out["latency_deviation_ms"] = self.latency_dev * 1e3
        out["expected_handoff_ms"] = self.expected_handoff * 1e3
        out["handoff_deviation_ms"] = self.handoff_dev * 1e3
        out["late_allowance_ms"] = self.late_allowance * 1e3
        out["late_chunks"] = self.late_chunks
        if ct.size:
            out["inference_ms.p50"] = float(np.percentile(ct, 50) * 1e3)
            out["inference_ms.p99"] = float(np.percentile(ct, 99) * 1e3)
        for part, times in self.part_times.items():
            if times:
                t = np.asarray(times)
                out[f"{part}_ms.p50"] = float(np.percentile(t, 50) * 1e3)
                out[f"{part}_ms.p99"] = float(np.percentile(t, 99) * 1e3)
        out.update({f"refused.{k}": v for k, v in self.refusals.items()})
        return out
