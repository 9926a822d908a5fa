"""Safety: latched stops, watchdogs and guards.

`SafetyMonitor` decides *whether* the arm may follow its plan; core/pipeline.py's
`CommandPipeline` composes it with the timeline, smoothing and limit enforcement.

Stops never jump: whatever the reason (e-stop, watchdog, deviation fault), the command
decelerates within the acceleration limits to a hold. E-stop and deviation faults latch and only
an explicit `reenable` clears them; the watchdog clears itself when fresh data arrives.

Every refusal is counted (counters feed /diagnostics) and logged through an injected callable,
once per occurrence of a condition and at most once per `log_interval_s` for repeated events, so
a stream of bad chunks cannot flood the log at the control rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Logger = Callable[[str], None]

# Reasons that latch until `reenable`; the watchdog reasons clear on fresh data.
ESTOP = "estop"
DEVIATION = "deviation"
COMMAND_GUARD = "command_guard"
WATCHDOG_CHUNK = "watchdog_chunk"
WATCHDOG_OBSERVATION = "watchdog_observation"
LATCHING_REASONS = (ESTOP, DEVIATION, COMMAND_GUARD)


@dataclass(frozen=True)
class SafetyConfig:
    """Watchdog, deviation and logging settings.

    chunk_timeout_s / observation_timeout_s: longest allowed silence of each stream once it has
        delivered its first message (0 disables); beyond it the arm decelerates to a hold.
    deviation_threshold: |commanded - measured| per joint (one value for all, or one per action
        dim) beyond which the arm is stopped (latched).
    deviation_grippers: check the grippers too. Off by default: a gripper closing on an object
        stops short of its command by design (its force limit, not position tracking, keeps it
        safe), by up to its whole range where it is normalised (AgiBot G1: commanded 1.0,
        measured 0.09 around the cube; checked, every grasp latched a stop).
    deviation_cycles: consecutive ticks over the threshold before the fault latches, so one
        noisy joint-state sample does not stop the robot.
    log_interval_s: repeats of the same refusal are counted but logged at most this often.
    """

    chunk_timeout_s: float = 2.0
    observation_timeout_s: float = 1.0
    deviation_threshold: float | tuple[float, ...] = 0.3
    deviation_cycles: int = 3
    deviation_grippers: bool = False
    log_interval_s: float = 5.0
    # The measured joints trail the commands (transport, controller, motor): a measurement is
    # compared with the closest of the commands sent in this window, so lag alone is not a fault.
    tracking_window_s: float = 0.3
    # a measurement outside a joint's limits by more than this share of its range is
    # implausible (core.inputs): never used, never a pose to start or resume from
    limit_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("chunk_timeout_s", "observation_timeout_s", "log_interval_s",
                     "tracking_window_s", "limit_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"SafetyConfig.{name}: got {value!r}; allowed: >= 0"
                    + (" (share of a joint's range)" if name == "limit_margin"
                       else " seconds (0 disables)"))
        thresholds = np.atleast_1d(np.asarray(self.deviation_threshold, dtype=np.float64))
        if thresholds.ndim != 1 or not np.all(np.isfinite(thresholds)) or np.any(
            thresholds <= 0.0
        ):
            raise ValueError(
                f"SafetyConfig.deviation_threshold: got {self.deviation_threshold!r}; allowed: "
                "a positive number or a list of positive numbers (one per action dim)"
            )
        if not isinstance(self.deviation_cycles, int) or self.deviation_cycles < 1:
            raise ValueError(
                f"SafetyConfig.deviation_cycles: got {self.deviation_cycles!r}; allowed: int >= 1"
            )


class SafetyMonitor:
    """Latched stops, watchdogs and guards; pure (time passed in), thread-safe."""

    def __init__(self, config: SafetyConfig | None = None, dim: int = 1,
                 logger: Logger | None = None, grippers: np.ndarray | None = None) -> None:
        """grippers: (dim,) bool mask of the gripper entries (not deviation-checked unless
        config.deviation_grippers)."""
        self.config = config or SafetyConfig()
        self.dim = dim
        thresholds = np.atleast_1d(np.asarray(self.config.deviation_threshold, np.float64))
        if thresholds.size == 1:
            thresholds = np.full(dim, thresholds[0])
        if thresholds.shape != (dim,):
            raise ValueError(
                f"SafetyConfig.deviation_threshold: {thresholds.size} values; allowed: 1 or "
                f"{dim} (one per action dim)"
            )
        if grippers is not None and not self.config.deviation_grippers:
            thresholds = np.where(np.asarray(grippers, bool), np.inf, thresholds)
        self._thresholds = thresholds
        self._log = logger or (lambda _msg: None)
        self._lock = threading.RLock()
        self._latched: str | None = None
        self._latched_since = 0.0
        self._latched_detail = ""
        self._last_chunk: float | None = None
        self._last_observation: float | None = None
        self._deviation_streak = 0
        self._active: set[str] = set()  # conditions currently refusing (logged on entry)
        self._counters: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    # ---- inputs ------------------------------------------------------------------------
    def feed_chunk(self, now: float) -> None:
        with self._lock:
            self._last_chunk = now

    def feed_observation(self, now: float) -> None:
        with self._lock:
            self._last_observation = now

    def estop(self, now: float, reason: str = ESTOP, detail: str = "") -> None:
        """Latch a stop; only `reenable` clears it. A second stop keeps the first reason."""
        with self._lock:
            if self._latched is None:
                self._latched = reason
                self._latched_since, self._latched_detail = now, detail or "stop requested"
            self._enter(reason, detail or "stop requested", now)

    def reenable(self, now: float) -> bool:
        """Clear a latched stop. Watchdogs restart from `now` (fresh grace period). Returns
        whether a stop was cleared."""
        with self._lock:
            was = self._latched
            self._latched = None
            self._deviation_streak = 0
            for reason in LATCHING_REASONS:
                self._active.discard(reason)
            if self._last_chunk is not None:
                self._last_chunk = now
            if self._last_observation is not None:
                self._last_observation = now
            if was is not None:
                self._log(f"re-enabled at {now:.3f}s (was stopped: {was})")
            return was is not None

    # ---- checks ------------------------------------------------------------------------
    @property
    def thresholds(self) -> np.ndarray:
        """(D,) |commanded - measured| beyond which a joint deviates."""
        return self._thresholds

    @property
    def latched(self) -> str | None:
        """Reason of the latched stop, or None."""
        with self._lock:
            return self._latched

    def latched_info(self) -> tuple[str, float, str] | None:
        """(reason, since, detail) of the latched stop, or None."""
        with self._lock:
            if self._latched is None:
                return None
            return self._latched, self._latched_since, self._latched_detail

    def restart_clock(self, now: float) -> None:
        """The clock jumped: the watchdogs count from `now` (a time in the future of the new
        clock would keep them from ever expiring)."""
        with self._lock:
            if self._last_chunk is not None:
                self._last_chunk = now
            if self._last_observation is not None:
                self._last_observation = now
            if self._latched is not None:
                self._latched_since = now
            self._last_logged.clear()

    def silent_for(self, now: float) -> dict[str, float]:
        """Seconds since the last chunk / observation (only streams that delivered once)."""
        with self._lock:
            return {name: now - last for name, last in (
                (WATCHDOG_CHUNK, self._last_chunk),
                (WATCHDOG_OBSERVATION, self._last_observation)) if last is not None}

    def stop_reason(self, now: float) -> str | None:
        """Why the arm must not follow its plan now (latched stop first), or None."""
        with self._lock:
            if self._latched is not None:
                return self._latched
            cfg = self.config
            reason = None
            for name, last, timeout in (
                (WATCHDOG_CHUNK, self._last_chunk, cfg.chunk_timeout_s),
                (WATCHDOG_OBSERVATION, self._last_observation, cfg.observation_timeout_s),
            ):
                expired = timeout > 0.0 and last is not None and now - last > timeout
                if expired:
                    self._enter(name, f"nothing new for {now - last:.3f}s > {timeout:.3f}s", now)
                    reason = reason or name
                elif name in self._active:
                    self._active.discard(name)
                    self._log(f"{name}: cleared at {now:.3f}s")
            return reason

    def check_deviation(self, now: float, commanded: np.ndarray, measured: np.ndarray) -> bool:
        """False (and latch DEVIATION) once |commanded - measured| has exceeded a joint's
        threshold for `deviation_cycles` consecutive calls."""
        with self._lock:
            excess = np.abs(np.asarray(commanded) - np.asarray(measured)) > self._thresholds
            if not excess.any():
                self._deviation_streak = 0
                return True
            self._deviation_streak += 1
            if self._deviation_streak < self.config.deviation_cycles:
                return True
            joints = np.flatnonzero(excess).tolist()
            worst = float(np.max(np.abs(np.asarray(commanded) - np.asarray(measured))))
            self.estop(now, DEVIATION, f"joints {joints} deviate up to {worst:.3f} (thresholds "
                       f"{self._thresholds[joints].round(3).tolist()})")
            return False

    def refuse(self, reason: str, detail: str, now: float) -> None:
        """Count a one-off refusal (bad chunk, NaN, clamp) and log it, throttled per reason."""
        with self._lock:
            self._counters[reason] = self._counters.get(reason, 0) + 1
            last = self._last_logged.get(reason)
            if last is not None and now - last < self.config.log_interval_s:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return
            more = self._suppressed.pop(reason, 0)
            suffix = f" ({more} more since the last report)" if more else ""
            self._last_logged[reason] = now
            self._log(f"refused ({reason}) at {now:.3f}s: {detail}{suffix}")

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def _enter(self, reason: str, detail: str, now: float) -> None:
        """A continuous condition begins: count and log once; repeats while active are free."""
        if reason in self._active:
            return
        self._active.add(reason)
        self._counters[reason] = self._counters.get(reason, 0) + 1
        self._log(f"refused ({reason}) at {now:.3f}s: {detail}")


__all__ = [
    "COMMAND_GUARD", "DEVIATION", "ESTOP", "LATCHING_REASONS", "WATCHDOG_CHUNK",
    "WATCHDOG_OBSERVATION", "Logger", "SafetyConfig", "SafetyMonitor",
]
