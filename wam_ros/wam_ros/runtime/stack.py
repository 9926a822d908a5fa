"""The robot-side runtime on a simulated clock: what offline bag replay and the simulator's
stack rollout share.

    stack = SimulatedStack(policy, spec, scheduler="async", latency_s=0.1)
    stack.start(t0)
    stack.advance(t, measure, command)   # ticks, control steps, finished inferences up to t
    stack.observe(obs, t)                # a synchronised observation arrived at t

Everything between an observation and a joint command is the nodes' own core code, with the
nodes' parameters (config/wam_ros.yaml): runtime.chunk_runner.ChunkRunner with the chosen
scheduler (ticked at 100 Hz like the policy node), core.decoding.ChunkDecoder, and
core.safety.CommandPipeline (timeline splicing and blending, Savitzky-Golay, limits, safety) at
the robot's control rate. Only the clock is simulated: an inference handed out at time t
finishes at t + `latency_s` (split f / 1 - f for sai's speculative and completing parts) of
simulated time, whatever it took on this machine, so a run is deterministic; the time each
inference really took is kept in `trace.compute_ms`. DDS transport is not modelled as such; a
graph's latency tail can be: with `latency_p99_s`, each inference's latency is drawn from a
log-normal with median `latency_s` and that 99th percentile (seeded: still deterministic). With
`handoff_s`, a finished chunk reaches the command pipeline that much later (the decoder and the
smoother's transport in the graph), and the runner learns it from the splice report, as the
policy node does from the smoother's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import yaml

from wam_ros.core.decoding import ChunkDecoder
from wam_ros.core.pipeline import CommandPipeline, PipelineConfig, pipeline_config
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import PolicySettings, settings_from
from wam_ros.core.types import Observation
from wam_ros.runtime.chunk_runner import ChunkRunner
from wam_ros.runtime.scheduler import Decision

TICK_HZ = 100.0  # as the policy node: time-based scheduler decisions


def node_params(node: str) -> dict[str, Any]:
    """The `ros__parameters` of one node in config/wam_ros.yaml."""
    from wam_ros.paths import config_dir

    doc = yaml.safe_load((config_dir() / "wam_ros.yaml").read_text()) or {}
    section = doc.get(f"/**/{node}") or doc.get(node) or {}  # (any namespace) or the root
    return dict(section.get("ros__parameters") or {})


def default_pipeline_config() -> PipelineConfig:
    """The smoother node's PipelineConfig as config/wam_ros.yaml sets it (the node builds its
    own the same way, from its declared parameters)."""
    params = node_params("wam_smoother")
    return pipeline_config(lambda group, cls: settings_from(cls, params, group))


@dataclass
class StackTrace:
    """What happened, for metrics and plots (joints in action units)."""

    chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # times, (H, D)
    executed_t: list[float] = field(default_factory=list)
    executed_q: list[np.ndarray] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)  # real wall time per inference
    boundary_jumps: list[float] = field(default_factory=list)
    first_action: list[tuple[float, np.ndarray]] = field(default_factory=list)
    rejected: int = 0
    # per applied chunk: (time applied, plan latency = that time - its observation's stamp)
    plan_latency: list[tuple[float, float]] = field(default_factory=list)


class SimulatedStack:
    """ChunkRunner + decoder + CommandPipeline driven by a simulated clock (module docstring).

    latency_s: simulated duration of a full inference (> 0); None: the measured one.
    handoff_s: delay from a chunk finished to it offered to the pipeline (>= 0).
    latency_p99_s: with latency_s, draw each inference's duration from a log-normal with median
    latency_s and this 99th percentile (>= latency_s; None: always latency_s), from a
    generator seeded with `seed`.
    pipeline_config: None = the smoother node's (config/wam_ros.yaml).
    policy_settings: PolicySettings fields that replace config/wam_ros.yaml's policy node
    parameters (e.g. inpaint_prefix, sai_s_mid).
    """

    def __init__(self, policy: Any, spec: RobotSpec, *, scheduler: str = "async",
                 latency_s: float | None = 0.1,
                 latency_p99_s: float | None = None, seed: int = 0, handoff_s: float = 0.0,
                 pipeline_config: PipelineConfig | None = None,
                 policy_settings: dict[str, Any] | None = None,
                 log: Callable[[str], None] = print) -> None:
        if latency_s is not None and not (np.isfinite(latency_s) and latency_s > 0):
            raise ValueError(f"latency_s: got {latency_s!r}; allowed: > 0 seconds or None "
                             "(the measured latency)")
        if latency_p99_s is not None and (latency_s is None or not (
                np.isfinite(latency_p99_s) and latency_p99_s >= latency_s)):
            raise ValueError(f"latency_p99_s: got {latency_p99_s!r}; allowed: >= latency_s "
                             f"({latency_s!r}), which must be set")
        if not (np.isfinite(handoff_s) and handoff_s >= 0.0):
            raise ValueError(f"handoff_s: got {handoff_s!r}; allowed: >= 0 seconds")
        self.handoff_s = float(handoff_s)
        self._handing: list[tuple[float, Any]] = []  # (offer time, decoded chunk), in order
        # log-normal: ln(p99 / p50) = z99 * sigma
        self._sigma = (float(np.log(latency_p99_s / latency_s) / 2.3263478740408408)
                       if latency_p99_s is not None else 0.0)
        self._rng = np.random.default_rng(seed)
        self.spec, self.log = spec, log
        self.settings = replace(settings_from(PolicySettings, node_params("wam_policy"),
                                              robot=spec.name, scheduler=scheduler),
                                **(policy_settings or {}))
        self.pipeline = CommandPipeline(spec, pipeline_config or default_pipeline_config(),
                                        logger=lambda _m: None)
        self.latency_s = latency_s
        self.runner = ChunkRunner.from_settings(policy, self.settings, latency_s or 0.1)
        self.decoder = ChunkDecoder(spec)
        self.trace = StackTrace()
        self._pending: tuple[Any, float, float] | None = None  # result, finish time, wall s
        self._next_tick = self._next_control = 0.0

    @property
    def commanding(self) -> bool:
        """A first command went out."""
        return bool(self.trace.executed_t)

    def start(self, now: float) -> None:
        """Clock origin: the first scheduler tick and control step happen at `now`."""
        self._next_tick = self._next_control = now

    def observe(self, obs: Observation, now: float) -> None:
        """A synchronised observation arrived at `now` (joint state feeds the watchdog)."""
        self.pipeline.offer_observation(now)
        self.runner.on_observation(obs, now)

    def joint_state(self, now: float) -> None:
        """A joint state arrived (feeds the safety watchdog)."""
        self.pipeline.offer_observation(now)

    def advance(self, until: float,
                measure: Callable[[float], np.ndarray | None] | None = None,
                command: Callable[[float, Any], None] | None = None) -> None:
        """Scheduler ticks, control steps and job completions before `until`, in time order.

        measure(now): the measured joints for the control step at `now` (None: none);
        command(now, PipelineOutput): called with each command the pipeline produces."""
        while True:
            events = [self._next_tick, self._next_control]
            if self._pending is not None:
                events.append(self._pending[1])
            if self._handing:
                events.append(self._handing[0][0])
            now = min(events)
            if now >= until:
                return
            if self._handing and now == self._handing[0][0]:
                self._apply(now, self._handing.pop(0)[1])
            elif self._pending is not None and now == self._pending[1]:
                self._finish(now)
            elif now == self._next_control:
                out = self.pipeline.step(now, measure(now) if measure else None)
                if out is not None:
                    self.trace.executed_t.append(now)
                    self.trace.executed_q.append(self.spec.joint_to_action(out.positions))
                    if command is not None:
                        command(now, out)
                self._next_control += self.pipeline.dt
            else:
                self._next_tick += 1.0 / TICK_HZ
                self._start_job(now)

    def _start_job(self, now: float) -> None:
        # polled on every tick, as the policy node does: the runner accounts idle time on
        # each poll and hands out nothing while a job is in flight
        job = self.runner.poll(now)
        if job is None:
            return
        assert self._pending is None, "the runner handed out a job while one was in flight"
        result = self.runner.execute(job)
        if result.error:
            self.log(f"inference failed: {result.error}")
        measured = result.compute_s
        if self.latency_s is not None:
            f = self.settings.sai_s_mid
            share = {Decision.SPECULATE: f, Decision.COMPLETE: 1.0 - f}.get(job.kind, 1.0)
            # the scheduler learns the simulated latency, as it would learn the real one
            latency = self.latency_s
            if self._sigma > 0.0:
                latency *= float(np.exp(self._sigma * self._rng.standard_normal()))
            result.compute_s = latency * share
        self._pending = (result, now + max(result.compute_s, 1e-6), measured)

    def _finish(self, now: float) -> None:
        assert self._pending is not None
        result, _, measured = self._pending
        self._pending = None
        chunk = self.runner.finish(result, now)
        if chunk is None:
            return
        self.trace.compute_ms.append(measured * 1e3)
        out = self.decoder.decode(chunk)
        if self.handoff_s > 0.0:
            self._handing.append((now + self.handoff_s, out))
        else:
            self._apply(now, out)

    def _apply(self, now: float, out: Any) -> None:
        """The decoded chunk reaches the command pipeline (the smoother's accept_chunk)."""
        splice = self.pipeline.offer_chunk(out, now)
        if not splice.accepted:
            self.trace.rejected += 1
            return
        self.runner.on_chunk_applied(out.stamp, now)
        self.trace.plan_latency.append((now, now - out.stamp))
        times = out.times()
        self.trace.chunks.append((times, self.spec.joint_to_action(out.actions)))
        if len(self.trace.chunks) > 1:
            self.trace.boundary_jumps.append(splice.boundary_jump)
        kept = times >= now
        if kept.any():
            k = int(np.argmax(kept))
            self.trace.first_action.append(
                (float(times[k]), self.spec.joint_to_action(out.actions[k].astype(float))))


__all__ = ["TICK_HZ", "SimulatedStack", "StackTrace", "default_pipeline_config",
           "node_params"]
