"""The per-tick command pipeline: the timeline, smoothing, limit enforcement and the safety
monitor (core/safety.py) composed into the one call the smoother node makes at the control
rate, `CommandPipeline.step(now, measured)`; `reenable` clears a latched stop once its cause
is gone."""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from wam_ros.core.health import ERROR, OK, WARN, clock_text
from wam_ros.core.inputs import InputRefused, JointStateCheck
from wam_ros.core.robot import RobotSpec
from wam_ros.core.safety import (
    COMMAND_GUARD,
    DEVIATION,
    ESTOP,
    WATCHDOG_CHUNK,
    WATCHDOG_OBSERVATION,
    Logger,
    SafetyConfig,
    SafetyMonitor,
)
from wam_ros.core.smoothing import ChunkSmoother, LimitEnforcer, LimitsConfig, SmoothingConfig
from wam_ros.core.timeline import (
    ActionTimeline,
    Rejection,
    SpliceResult,
    TimelineConfig,
)
from wam_ros.core.types import ActionSpace, Chunk

# a command exactly the minimum interval after the last (a timer set by early_step_wait)
# may differ from it by float rounding of the stamps
_TIME_EPS = 1e-9

class PipelineState(str, Enum):
    WAITING = "waiting"  # no valid measurement yet; nothing is commanded
    RUNNING = "running"  # following the plan
    HOLDING = "holding"  # no plan left (or watchdog): decelerating to / holding a position
    STOPPING = "stopping"  # latched stop, still decelerating
    STOPPED = "stopped"  # latched stop, at rest

@dataclass(frozen=True)
class PipelineConfig:
    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    control_dt: float | None = None  # None: 1 / the robot's control_rate_hz

    def __post_init__(self) -> None:
        for name, kind in (("timeline", TimelineConfig), ("smoothing", SmoothingConfig),
                           ("limits", LimitsConfig), ("safety", SafetyConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(
                    f"PipelineConfig.{name}: got {getattr(self, name)!r}; allowed: a "
                    f"{kind.__name__}"
                )
        if self.control_dt is not None and not (
            np.isfinite(self.control_dt) and self.control_dt > 0.0
        ):
            raise ValueError(
                f"PipelineConfig.control_dt: got {self.control_dt!r}; allowed: > 0 seconds or "
                "None (robot's control rate)"
            )

# The smoother's parameter groups (config/wam_ros.yaml: `timeline.*`, ...) -> their settings.
PIPELINE_GROUPS: dict[str, type] = {"timeline": TimelineConfig, "smoothing": SmoothingConfig,
                                    "limits": LimitsConfig, "safety": SafetyConfig}


def pipeline_config(group_settings: Callable[[str, type], Any]) -> PipelineConfig:
    """The one pipeline builder: a PipelineConfig from `group_settings(group, settings class)`
    per parameter group (the smoother node declares them as ROS parameters; the simulated
    stack reads them from config/wam_ros.yaml)."""
    return PipelineConfig(**{group: group_settings(group, cls)
                             for group, cls in PIPELINE_GROUPS.items()})


@dataclass(frozen=True)
class ReenableResult:
    """What `CommandPipeline.reenable` did: truthy when a stop was cleared; `message` says
    why not otherwise (what the operator must fix first)."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

_STOP_TEXT = {ESTOP: "e-stop", DEVIATION: "deviation stop", COMMAND_GUARD: "command-guard fault"}

@dataclass(frozen=True)
class PipelineOutput:
    """One control tick: positions to command, their velocities, and why."""

    positions: np.ndarray  # (D,) joint units, action layout
    velocities: np.ndarray  # (D,)
    state: PipelineState
    reason: str = ""  # stop reason or "no_plan"
    idle: bool = False  # holding for lack of a (fresh) plan, incl. the watchdog's hold; feeds
    # the schedulers' idle fraction. False during a latched stop, which is deliberate.

class CommandPipeline:
    """timeline + smoothing + limits + safety; `step` is called at the control rate."""

    def __init__(self, spec: RobotSpec, config: PipelineConfig | None = None,
                 logger: Logger | None = None) -> None:
        self.spec = spec
        self.config = config or PipelineConfig()
        dim = spec.action_dim
        self.timeline = ActionTimeline(dim, self.config.timeline)
        self.smoother = ChunkSmoother(self.config.smoothing, spec.gripper_mask())
        self.enforcer = LimitEnforcer.from_spec(spec, self.config.control_dt, self.config.limits)
        self.monitor = SafetyMonitor(self.config.safety, dim, logger, spec.gripper_mask())
        if self.config.limits.min_command_interval_s >= self.dt:
            raise ValueError(f"LimitsConfig.min_command_interval_s: got "
                             f"{self.config.limits.min_command_interval_s!r}; allowed: > 0 "
                             f"seconds, below the control period ({self.dt:g} s)")
        self._lower = spec.limits_array("lower")
        self._upper = spec.limits_array("upper")
        # One lock for the whole pipeline: chunks arrive on the policy's thread while `step`
        # runs on the control timer; both are short (< 1 ms), so nobody waits noticeably.
        self._lock = threading.RLock()
        self._state = PipelineState.WAITING
        self._sent: deque[tuple[float, np.ndarray]] = deque()  # recent commands
        self._measured: np.ndarray | None = None  # last valid joint measurement
        self._plausible = JointStateCheck(spec, self.config.safety.limit_margin)
        # why the newest measurement cannot be trusted ("" when it can)
        self._measurement_problem = "no joint state yet"
        self._last_step: float | None = None  # time of the last command
        self._homing_until = -np.inf  # go_home's plan runs until then
        # idle accounting from the first accepted plan: the share of control time the arm
        # held for lack of a plan (what the schedulers try to drive to zero)
        self._plan_seen = False
        self._idle_s = 0.0
        self._observed_s = 0.0

    @property
    def dt(self) -> float:
        return self.enforcer.dt

    @property
    def state(self) -> PipelineState:
        return self._state

    # ---- inputs ------------------------------------------------------------------------
    def offer_chunk(self, chunk: Chunk, now: float) -> SpliceResult:
        """Smooth and splice an absolute-space chunk; refusals are counted and logged."""
        with self._lock:
            latched = self.monitor.latched
            if latched is not None:
                result = SpliceResult(False, Rejection.STOPPED,
                                      f"chunk {chunk.chunk_id}: stopped ({latched})")
            else:
                if (chunk.space == ActionSpace.JOINT_ABSOLUTE and chunk.horizon > 0
                        and chunk.dim == self.spec.action_dim
                        and np.all(np.isfinite(chunk.actions))):
                    # Only well-formed chunks are smoothed; the timeline rejects the rest
                    # with the precise reason.
                    chunk = self.smoother(chunk)
                result = self.timeline.splice(chunk, now, self.enforcer.position)
            if result.accepted:
                self.monitor.feed_chunk(now)
                self._plan_seen = True
            else:
                assert result.reason is not None
                self.monitor.refuse(f"chunk_{result.reason.value}", result.message, now)
            return result

    def offer_observation(self, now: float, measured: np.ndarray | None = None) -> None:
        """A valid joint state arrived (feeds the observation watchdog); with `measured`, it is
        also the pose re-enabling checks against. Callers validate first (core.inputs): a
        refused reading goes to `refuse_measurement` instead, and the watchdog starves."""
        with self._lock:
            if measured is not None:
                try:
                    self._measured = self._valid(np.asarray(measured, np.float64))
                except InputRefused as exc:
                    self.refuse_measurement(now, exc.reason, str(exc))
                    return
                self._measurement_problem = ""
            self.monitor.feed_observation(now)

    def refuse_measurement(self, now: float, reason: str, detail: str) -> None:
        """A joint state was refused where it entered: counted, and re-enabling is refused
        until a valid one arrives."""
        with self._lock:
            self._measurement_problem = f"joint state refused ({reason}: {detail})"
            self.monitor.refuse(f"measurement_{reason}", detail, now)

    def _valid(self, measured: np.ndarray) -> np.ndarray:
        if measured.shape != (self.spec.action_dim,):
            raise InputRefused("wrong_size", f"expected ({self.spec.action_dim},) joint "
                               f"positions, got {measured.shape}")
        return self._plausible.plausible(measured)

    def estop(self, now: float, detail: str = "") -> None:
        with self._lock:
            self.monitor.estop(now, ESTOP, detail)

    def reenable(self, now: float, estop_asserted: bool = False) -> ReenableResult:
        """Clear a latched stop, unless its cause persists: the e-stop input still asserted,
        no trustworthy measurement (none, refused, or older than the observation watchdog
        allows), or the arm farther from the held command than the deviation thresholds (an
        arm still pushed or blocked). Nothing is reset to the measurement: the commands go on
        from the held command, which is then within the thresholds of where the arm is, at
        rest, under the velocity and acceleration limits; the old plan is gone."""
        with self._lock:
            latched = self.monitor.latched
            if latched is None:
                return ReenableResult(False, "nothing to re-enable: no stop is latched")
            why = self._reenable_blocker(now, estop_asserted)
            if why:
                self.monitor.refuse("reenable_refused", why, now)
                return ReenableResult(False, f"{_STOP_TEXT.get(latched, latched)} stays "
                                      f"latched: {why}")
            self.monitor.reenable(now)
            self.timeline.clear()
            self._sent.clear()
            return ReenableResult(True, f"re-enabled (was: {_STOP_TEXT.get(latched, latched)})")

    def _reenable_blocker(self, now: float, estop_asserted: bool) -> str:
        if estop_asserted:
            return "the e-stop input is still asserted (true); release it first"
        if self._measurement_problem:
            return self._measurement_problem
        timeout = self.config.safety.observation_timeout_s
        silent = self.monitor.silent_for(now).get(WATCHDOG_OBSERVATION)
        if timeout > 0.0 and silent is not None and silent > timeout:
            return f"no joint state for {silent:.1f} s"
        position, measured = self.enforcer.position, self._measured
        if position is not None and measured is not None:
            excess = np.abs(position - measured) - self.monitor.thresholds
            if np.any(excess > 0.0):
                j = int(np.argmax(excess))
                return (f"{self.spec.action_layout[j]} is {abs(position[j] - measured[j]):.3f} "
                        f"from the held command (deviation limit "
                        f"{self.monitor.thresholds[j]:.3f}); free the arm first")
        return ""

    def on_clock_jump(self, now: float) -> None:
        """The clock went backwards (simulator reset, bag loop): every time the pipeline kept
        belongs to the old clock. The plan and its stamp order are dropped, the watchdogs and
        the command interval restart from `now`; the arm decelerates from its last command,
        which stays the reference (no jump), and a latched stop stays latched."""
        with self._lock:
            self.timeline.reset(self.timeline.episode)
            self.monitor.restart_clock(now)
            self._last_step = None
            self._sent.clear()
            self._homing_until = -np.inf

    def conditions(self, now: float) -> list[tuple[int, str]]:
        """[(level, message)] for /diagnostics: ERROR while stopped or not commanding, WARN
        while a watchdog holds the arm."""
        with self._lock:
            out: list[tuple[int, str]] = []
            info = self.monitor.latched_info()
            if info is not None:
                reason, since, detail = info
                out.append((ERROR, f"{_STOP_TEXT.get(reason, reason)} latched since "
                            f"{clock_text(since)} ({detail})"))
            if not self.enforcer.initialised:
                out.append((ERROR, f"not commanding: {self._measurement_problem or 'waiting'}"))
            elif info is None:
                silent = self.monitor.silent_for(now)
                cfg = self.config.safety
                for name, timeout, what in (
                        (WATCHDOG_CHUNK, cfg.chunk_timeout_s, "no new chunk"),
                        (WATCHDOG_OBSERVATION, cfg.observation_timeout_s,
                         "no valid joint state")):
                    if timeout > 0.0 and silent.get(name, 0.0) > timeout:
                        out.append((WARN, f"holding: {what} for {silent[name]:.1f} s"))
            return out or [(OK, f"{self._state.value}")]

    def release(self) -> None:
        """Stop owning the arm's command (lifecycle deactivate, and before activating again):
        the plan is dropped, and the next step starts from the measured pose at rest, wherever
        something else moved the arm meanwhile (the measurement is validated as always)."""
        with self._lock:
            self.timeline.clear()
            self.enforcer.release()
            self._last_step = None
            self._sent.clear()
            self._homing_until = -np.inf
            if self._state is not PipelineState.STOPPED:
                self._state = PipelineState.WAITING

    def set_limits(self, limits: LimitsConfig) -> None:
        """Scale the robot's velocity and acceleration limits while running (`ros2 param set
        limits.velocity_scale 0.5`): every later command keeps to the new limits, a joint
        faster than its new limit is slowed down to it at the acceleration limit."""
        with self._lock:
            self.enforcer.set_limits(self.spec.limits_array("velocity") * limits.velocity_scale,
                                     self.spec.limits_array("acceleration")
                                     * limits.acceleration_scale)

    def reset_episode(self, episode_id: int | None = None) -> None:
        with self._lock:
            self.timeline.reset(episode_id)
            self._homing_until = -np.inf

    def go_home(self, now: float, speed_scale: float = 0.4) -> float:
        """Replace the plan by a smooth move to the robot's home pose (between episodes, with
        the policy paused); returns its duration in seconds. Each joint's share of the move
        takes a cosine profile whose peak speed is `speed_scale` x its velocity limit; the
        limit enforcer still bounds every command. The chunk watchdog is fed while it runs
        (the plan is fresh, it just is not the policy's)."""
        if not 0.0 < speed_scale <= 1.0:
            raise ValueError(f"speed_scale: got {speed_scale!r}; allowed: 0 < s <= 1")
        with self._lock:
            if self.monitor.latched is not None:
                raise RuntimeError(f"stopped ({self.monitor.latched}): re-enable first")
            if not self.enforcer.initialised:
                raise RuntimeError("no joint state yet")
            assert self.enforcer.position is not None
            start, goal = self.enforcer.position.copy(), self.spec.home_vector()
            vmax = self.spec.limits_array("velocity") * speed_scale
            # cosine profile: peak speed = pi/2 * distance / duration
            duration = max(0.5, float(np.max(np.pi / 2 * np.abs(goal - start) / vmax)))
            dt = self.spec.action_dt
            s = 0.5 - 0.5 * np.cos(np.pi * np.clip(np.arange(0.0, duration + 2 * dt, dt)
                                                   / duration, 0.0, 1.0))
            actions = start + s[:, None] * (goal - start)
            self.timeline.reset(None)
            result = self.timeline.splice(Chunk(now, actions.astype(np.float32), dt), now,
                                          start)
            if not result.accepted:  # cannot happen for a well-formed home pose
                raise RuntimeError(f"home plan refused: {result.message}")
            self.monitor.feed_chunk(now)
            self._homing_until = now + duration
            return duration

    # ---- the control tick --------------------------------------------------------------
    def early_step_wait(self, now: float) -> float | None:
        """Seconds until an extra command may be sent between two control ticks (a fresh plan
        just arrived): commands are at least `limits.min_command_interval_s` apart. 0.0: now;
        None before the first command."""
        with self._lock:
            return self._wait(now)

    def _wait(self, now: float) -> float | None:
        if self._last_step is None or not self.enforcer.initialised:
            return None
        wait = self.config.limits.min_command_interval_s - (now - self._last_step)
        return wait if wait > _TIME_EPS else 0.0

    def _interval(self, now: float) -> float | None:
        """Seconds the next command is limited over: the time since the last command, at most
        a period; None when there is no last command or it went out less than the minimum
        command interval ago."""
        if self._wait(now) != 0.0:
            return None
        return min(now - self._last_step, self.dt)

    def step(self, now: float, measured: np.ndarray | None = None, early: bool = False,
             *, offered: bool = False) -> PipelineOutput | None:
        """Next command. Starts from the first finite `measured` (None until one arrives).
        `offered`: instead of `measured`, the newest joint state given to `offer_observation`
        if no refused one came after it, else none (a node whose readings arrive on another
        thread: taken under the pipeline's lock, a tick never revives an older reading).

        Every command is limited over the time actually elapsed since the previous one (at
        most a period: a late tick never takes a bigger step), so velocity and acceleration
        hold in real time even when ticks jitter. `early`: an extra command between two ticks
        (a fresh plan arrived; the caller then restarts its tick period). Commands are never
        closer than `limits.min_command_interval_s`: a step asked for sooner returns None (see
        `early_step_wait`).
        """
        with self._lock:
            dt = self._interval(now)
            if dt is None and (early or (self._last_step is not None
                                         and self.enforcer.initialised)):
                return None  # too soon after the last command (or nothing to be early to)
            if offered:
                if measured is not None:
                    raise ValueError("step: give `measured` or `offered`, not both")
                if not self._measurement_problem:
                    measured = self._measured
            elif measured is not None:
                try:
                    measured = self._valid(np.asarray(measured, dtype=np.float64)).copy()
                except InputRefused as exc:
                    # never a pose to start from or to compare with
                    self.monitor.refuse("bad_measurement", str(exc), now)
                    self._measurement_problem = f"joint state refused ({exc.reason}: {exc})"
                    measured = None
                else:
                    self._measured = measured
                    self._measurement_problem = ""
            if not self.enforcer.initialised:
                if measured is None:
                    return None
                # Start exactly where the arm is, at rest: the first commands cannot jump.
                self.enforcer.reset(measured)
            elif measured is not None:
                assert self.enforcer.position is not None
                self.monitor.check_deviation(now, self._tracking_reference(measured), measured)

            assert self.enforcer.position is not None
            previous = self.enforcer.position.copy()
            if now <= self._homing_until:
                self.monitor.feed_chunk(now)
            reason = self.monitor.stop_reason(now) or ""
            idle = False
            if reason:
                # Drop the plan: after the stop, the next chunk is blended from the held pose.
                self.timeline.clear()
                command = self.enforcer.brake(dt)
                if self.monitor.latched is not None:
                    state = PipelineState.STOPPED if self.enforcer.stopped else (
                        PipelineState.STOPPING)
                else:
                    # The watchdog's hold waits for a fresh plan: that is idling.
                    state, idle = PipelineState.HOLDING, True
            else:
                target = self.timeline.sample(now)
                if target is None:
                    command = self.enforcer.brake(dt)
                    state, reason, idle = PipelineState.HOLDING, "no_plan", True
                else:
                    outside = (target < self._lower) | (target > self._upper)
                    if outside.any():
                        self.monitor.refuse(
                            "target_clamped",
                            f"joints {np.flatnonzero(outside).tolist()} beyond position limits",
                            now)
                    command = self.enforcer.step(target, dt)
                    idle = self.timeline.remaining(now) <= 0.0
                    state = PipelineState.HOLDING if idle else PipelineState.RUNNING
                    reason = "no_plan" if idle else ""
            if not (np.all(np.isfinite(command)) and np.all(command >= self._lower)
                    and np.all(command <= self._upper)):
                # Unreachable while LimitEnforcer keeps its guarantees. Never send it: latch a
                # fault and hold the last valid command (the enforcer's state is suspect, so it
                # restarts from there at rest).
                self.monitor.estop(now, COMMAND_GUARD, f"command {command} failed the guard "
                                   "(non-finite or outside the position limits)")
                self.enforcer.reset(previous)
                command = previous
                state, reason, idle = PipelineState.STOPPED, COMMAND_GUARD, False
            self._state = state
            if self._plan_seen and self._last_step is not None:
                interval = max(0.0, now - self._last_step)
                self._observed_s += interval
                if idle:
                    self._idle_s += interval
            self._last_step = now
            self._sent.append((now, command.copy()))
            window = self.config.safety.tracking_window_s
            while self._sent and self._sent[0][0] < now - window:
                self._sent.popleft()
            return PipelineOutput(command, self.enforcer.velocity_cmd.copy(), state, reason,
                                  idle)

    def preview(self, now: float, steps: int) -> np.ndarray:
        """(K, D), K <= steps: the commands the next regular ticks would send (at now + k dt,
        k = 1..K) if no chunk arrived and nothing stopped, the pipeline left as it is. Within
        the limits like every command (the same enforcer runs on a copy of its state); it
        ends with the plan and is empty unless the pipeline is running: a hold or a stop is
        never extrapolated. For trajectory controllers, so the arm keeps to the plan through
        a late control tick instead of stopping at the last command."""
        with self._lock:
            d = self.spec.action_dim
            end = self.timeline.end_time
            if self._state is not PipelineState.RUNNING or end is None or steps <= 0:
                return np.empty((0, d))
            times = [t for t in (now + k * self.dt for k in range(1, steps + 1)) if t <= end]
            if not times:
                return np.empty((0, d))
            targets = self.timeline.sample_many(times)
            assert targets is not None  # it has an end time: there is a plan
            enforcer = copy.copy(self.enforcer)  # its step rebinds, never mutates, arrays
            return np.array([enforcer.step(target, self.dt) for target in targets])

    def _tracking_reference(self, measured: np.ndarray) -> np.ndarray:
        """Per joint, the recent command closest to the measurement (the current command when
        there is no history)."""
        assert self.enforcer.position is not None
        if not self._sent:
            return self.enforcer.position
        sent = np.stack([c for _, c in self._sent])  # (K, D)
        closest = np.argmin(np.abs(sent - measured), axis=0)
        return sent[closest, np.arange(sent.shape[1])]

    def diagnostics(self, now: float) -> dict[str, float | int | str]:
        """Flat key -> value map for /diagnostics."""
        with self._lock:
            out: dict[str, float | int | str] = {
                "state": self._state.value,
                "stop_reason": self.monitor.latched or "",
                "plan_remaining_s": self.timeline.remaining(now),
                "idle_s": self._idle_s,
                "observed_s": self._observed_s,
                "idle_fraction": self._idle_s / self._observed_s if self._observed_s else 0.0,
            }
            for key, value in self.monitor.counters().items():
                out[f"refused.{key}"] = value
            for key, value in self.timeline.counters().items():
                out[f"timeline.{key}"] = value
            return out

def thresholds_per_joint(spec: RobotSpec, arm: float, gripper: float) -> tuple[float, ...]:
    """Deviation thresholds in action order: one value for arm joints, one for grippers (whose
    units differ, m vs rad)."""
    return tuple(gripper if g else arm for g in spec.gripper_mask())


__all__ = ["PIPELINE_GROUPS", "CommandPipeline", "PipelineConfig", "PipelineOutput",
           "PipelineState", "ReenableResult", "pipeline_config", "thresholds_per_joint"]
