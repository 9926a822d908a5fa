"""The execution timeline: absolute joint targets with absolute times, spliced chunk by chunk.

A World Action Model returns chunks of future actions, each action meant for a fixed absolute
time (`Chunk.times()`). With asynchronous inference a new chunk arrives while the previous one is
still executing, so the timeline has to *splice* it in at the present: actions already in the
past are useless (dropped), and the overlap with the plan being executed is blended so the
commanded trajectory stays continuous. Blending modes:

- ``crossfade``: the new chunk starts exactly on the old plan and takes over with a smoothstep
  weight over ``crossfade_s`` seconds (position *and* velocity continuous at both ends), or by
  the end of the old plan if that comes first.
- ``frozen_prefix``: RTC-style; the first ``frozen_actions`` new actions keep the old plan
  verbatim (they may already be committed downstream), then the crossfade above.
- ``replace``: the new chunk wins at once; the limit enforcer downstream absorbs any jump.

This is a pure class (time is passed in, no ROS, no wall clock), guarded by a lock because the
policy thread splices while the control timer samples, and it re-checks its invariants after
every mutation so a bug shows up as an exception at the splice, not as a jerk on the robot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum

import numpy as np

from wam_ros.core.numeric import clip
from wam_ros.core.types import ActionSpace, Chunk

BLEND_MODES = ("crossfade", "frozen_prefix", "replace")


class Rejection(str, Enum):
    """Why a chunk was not spliced; the value is the counter / diagnostics key."""

    LATE = "late"  # every action is timed before now + drop margin
    OUT_OF_ORDER = "out_of_order"  # stamp not newer than the last accepted chunk's
    NON_FINITE = "non_finite"  # NaN or inf in the actions
    WRONG_DIM = "wrong_dim"  # action dimension differs from the timeline's
    WRONG_SPACE = "wrong_space"  # not JOINT_ABSOLUTE (decode first)
    WRONG_EPISODE = "wrong_episode"  # produced for another episode than the current one
    EMPTY = "empty"  # zero actions
    STOPPED = "stopped"  # refused by CommandPipeline while a stop is latched (not the timeline)
    FUTURE = "future"  # stamped more than max_future_s after now (a clock out of sync)


class TimelineInvariantError(RuntimeError):
    """The timeline's internal state is inconsistent (a bug, never a bad input)."""


@dataclass(frozen=True)
class TimelineConfig:
    """How chunks are spliced into the execution timeline.

    drop_margin_s: actions timed before now + drop_margin_s are dropped; covers the time between
        the splice and the first command that can still act on them.
    blend: one of BLEND_MODES.
    crossfade_s: duration of the smoothstep hand-over from the old plan to the new chunk
        (0 = switch at once after the frozen prefix).
    frozen_actions: frozen_prefix only: how many leading new actions keep the old plan (>= 1).
    max_future_s: a chunk stamped more than this after `now` is refused (its observation
        cannot be from the future; accepted, it would hold the arm for as long as it lies
        ahead and its stamp would refuse every chunk after it).
    """

    drop_margin_s: float = 0.0
    blend: str = "crossfade"
    crossfade_s: float = 0.2
    frozen_actions: int = 3
    max_future_s: float = 0.5

    def __post_init__(self) -> None:
        if not np.isfinite(self.max_future_s) or self.max_future_s < 0.0:
            raise ValueError(
                f"TimelineConfig.max_future_s: got {self.max_future_s!r}; allowed: >= 0 seconds"
            )
        if not np.isfinite(self.drop_margin_s) or self.drop_margin_s < 0.0:
            raise ValueError(
                f"TimelineConfig.drop_margin_s: got {self.drop_margin_s!r}; allowed: >= 0 seconds"
            )
        if self.blend not in BLEND_MODES:
            raise ValueError(
                f"TimelineConfig.blend: got {self.blend!r}; allowed: {', '.join(BLEND_MODES)}"
            )
        if not np.isfinite(self.crossfade_s) or self.crossfade_s < 0.0:
            raise ValueError(
                f"TimelineConfig.crossfade_s: got {self.crossfade_s!r}; allowed: >= 0 seconds"
            )
        if not isinstance(self.frozen_actions, int) or isinstance(self.frozen_actions, bool):
            raise ValueError(
                f"TimelineConfig.frozen_actions: got {self.frozen_actions!r}; allowed: an int"
            )
        if self.frozen_actions < 1:
            raise ValueError(
                f"TimelineConfig.frozen_actions: got {self.frozen_actions!r}; allowed: >= 1"
            )


@dataclass(frozen=True)
class SpliceResult:
    """Outcome of `ActionTimeline.splice`.

    dropped: actions discarded because they were timed in the past.
    boundary_jump: max |new action - old plan| at the first kept action, before blending: how
        much the blend had to absorb (0 when there was no previous plan).
    """

    accepted: bool
    reason: Rejection | None = None
    message: str = ""
    dropped: int = 0
    kept: int = 0
    boundary_jump: float = 0.0


class ActionTimeline:
    """Absolute joint targets over absolute time; splice chunks in, sample targets out."""

    def __init__(self, dim: int, config: TimelineConfig | None = None) -> None:
        if dim < 1:
            raise ValueError(f"ActionTimeline.dim: got {dim!r}; allowed: >= 1")
        self.dim = dim
        self.config = config or TimelineConfig()
        self._lock = threading.Lock()
        self._times = np.empty(0, dtype=np.float64)  # (N,) strictly increasing
        self._targets = np.empty((0, dim), dtype=np.float64)  # (N, D)
        self._last_stamp = -np.inf
        self._episode: int | None = None
        self._counters: dict[str, int] = {"accepted": 0, "dropped_actions": 0}
        for reason in Rejection:
            self._counters[f"rejected_{reason.value}"] = 0

    # ---- mutation ----------------------------------------------------------------------
    def splice(
        self, chunk: Chunk, now: float, hold_position: np.ndarray | None = None
    ) -> SpliceResult:
        """Insert `chunk` at `now`; see the module docstring for the blending.

        hold_position: (D,) position to blend from when the timeline is empty (typically the
        last commanded position), so the first chunk after a stop does not start with a jump.
        """
        with self._lock:
            rejection = self._validate(chunk)
            if rejection is None and chunk.stamp - now > self.config.max_future_s:
                rejection = Rejection.FUTURE, (
                    f"chunk {chunk.chunk_id}: stamped {chunk.stamp - now:.3f} s after now "
                    f"(allowed: {self.config.max_future_s:g} s)")
            if rejection is not None:
                return self._reject(*rejection)
            times = chunk.times().astype(np.float64)  # (H,)
            actions = chunk.actions.astype(np.float64)  # (H, D)
            keep = times >= now + self.config.drop_margin_s
            if not keep.any():
                return self._reject(
                    Rejection.LATE,
                    f"chunk {chunk.chunk_id}: last action at {times[-1]:.3f}s is before "
                    f"now + margin {now + self.config.drop_margin_s:.3f}s",
                )
            dropped = int((~keep).sum())
            times, actions = times[keep], actions[keep]

            # The plan the robot would follow without this chunk, evaluated where needed.
            old_present = self._times.size > 0
            if not old_present and hold_position is not None:
                hold = np.asarray(hold_position, dtype=np.float64)
                if hold.shape != (self.dim,) or not np.all(np.isfinite(hold)):
                    raise ValueError(
                        f"hold_position: expected finite ({self.dim},), got {hold.shape}"
                    )
                old_times = np.array([now], dtype=np.float64)
                old_targets = hold[None, :]
            else:
                old_times, old_targets = self._times, self._targets

            boundary_jump = 0.0
            if old_times.size > 0:
                old_at_new = _interp(old_times, old_targets, times)  # (H', D)
                boundary_jump = float(np.max(np.abs(actions[0] - old_at_new[0])))
                w = self._weights(times, float(old_times[-1]))[:, None]  # (H', 1)
                actions = (1.0 - w) * old_at_new + w * actions
                # Keep the old plan between now and the first new action, starting with its
                # value at `now`, so sampling in that gap follows the old plan, not a jump.
                gap = (old_times > now) & (old_times < times[0])
                prefix_t = old_times[gap]
                prefix_x = old_targets[gap]
                if now < times[0]:
                    prefix_t = np.concatenate([[now], prefix_t])
                    prefix_x = np.concatenate([_interp(old_times, old_targets, [now]), prefix_x])
                times = np.concatenate([prefix_t, times])
                actions = np.concatenate([prefix_x, actions])

            self._times, self._targets = times, actions
            self._last_stamp = chunk.stamp
            self._counters["accepted"] += 1
            self._counters["dropped_actions"] += dropped
            self._check_invariants()
            return SpliceResult(
                accepted=True, dropped=dropped, kept=int(keep.sum()),
                boundary_jump=boundary_jump,
            )

    def clear(self) -> None:
        """Forget the plan (after a stop) but keep the stamp order and the counters."""
        with self._lock:
            self._times = np.empty(0, dtype=np.float64)
            self._targets = np.empty((0, self.dim), dtype=np.float64)

    def reset(self, episode_id: int | None = None) -> None:
        """New episode: forget plan and stamp order; accept only chunks of `episode_id`."""
        with self._lock:
            self._times = np.empty(0, dtype=np.float64)
            self._targets = np.empty((0, self.dim), dtype=np.float64)
            self._last_stamp = -np.inf
            self._episode = episode_id

    # ---- queries -----------------------------------------------------------------------
    def sample(self, now: float) -> np.ndarray | None:
        """(D,) target at `now`: linear between actions, first/last action outside; None if
        there is no plan."""
        targets = self.sample_many([now])
        return None if targets is None else targets[0]

    def sample_many(self, times: np.ndarray | list[float]) -> np.ndarray | None:
        """(M, D) targets at each of `times`, each row what `sample` gives at that time (one
        search for all: a preview of the next ticks costs one call, not one per tick); None
        if there is no plan."""
        with self._lock:
            if self._times.size == 0:
                return None
            return _interp(self._times, self._targets, times)

    def remaining(self, now: float) -> float:
        """Seconds of plan left after `now` (0 when empty or exhausted)."""
        with self._lock:
            if self._times.size == 0:
                return 0.0
            return max(0.0, float(self._times[-1]) - now)

    def needs_inference(self, now: float, expected_latency: float, margin: float = 0.0) -> bool:
        """Async trigger: a chunk started now would arrive no later than the plan runs out."""
        return self.remaining(now) <= expected_latency + margin

    @property
    def empty(self) -> bool:
        with self._lock:
            return self._times.size == 0

    @property
    def episode(self) -> int | None:
        with self._lock:
            return self._episode

    @property
    def end_time(self) -> float | None:
        with self._lock:
            return float(self._times[-1]) if self._times.size else None

    @property
    def last_stamp(self) -> float | None:
        with self._lock:
            return None if np.isinf(self._last_stamp) else float(self._last_stamp)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (times (N,), targets (N, D)) for plotting, tests and diagnostics."""
        with self._lock:
            return self._times.copy(), self._targets.copy()

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    # ---- internals ---------------------------------------------------------------------
    def _validate(self, chunk: Chunk) -> tuple[Rejection, str] | None:
        if chunk.space != ActionSpace.JOINT_ABSOLUTE:
            return Rejection.WRONG_SPACE, (
                f"chunk {chunk.chunk_id}: space {chunk.space.name}; allowed: JOINT_ABSOLUTE"
            )
        if chunk.horizon == 0:
            return Rejection.EMPTY, f"chunk {chunk.chunk_id}: no actions"
        if chunk.dim != self.dim:
            return Rejection.WRONG_DIM, (
                f"chunk {chunk.chunk_id}: {chunk.dim} dims; allowed: {self.dim}"
            )
        if not np.all(np.isfinite(chunk.actions)) or not np.isfinite(chunk.stamp):
            return Rejection.NON_FINITE, f"chunk {chunk.chunk_id}: NaN or inf in actions/stamp"
        if self._episode is not None and chunk.episode_id != self._episode:
            return Rejection.WRONG_EPISODE, (
                f"chunk {chunk.chunk_id}: episode {chunk.episode_id}; allowed: {self._episode}"
            )
        if chunk.stamp <= self._last_stamp:
            return Rejection.OUT_OF_ORDER, (
                f"chunk {chunk.chunk_id}: stamp {chunk.stamp:.3f}s is not newer than the last "
                f"accepted {self._last_stamp:.3f}s"
            )
        return None

    def _reject(self, reason: Rejection, message: str) -> SpliceResult:
        self._counters[f"rejected_{reason.value}"] += 1
        return SpliceResult(accepted=False, reason=reason, message=message)

    def _weights(self, times: np.ndarray, old_end: float) -> np.ndarray:
        """(H',) weight of the new chunk per kept action (0 = old plan, 1 = new chunk).

        Beyond its last action the old plan only holds still, so when it ends inside the
        crossfade window the hand-over is shortened to end with it (otherwise a well-timed
        async chunk would be dragged toward the old plan's final pose). An old plan that has
        already ended is a hold, and the full crossfade starts the new chunk from rest.
        """
        cfg = self.config
        if cfg.blend == "replace":
            return np.ones_like(times)
        # The hand-over starts at the last frozen action (crossfade: the first new action, so
        # the new trajectory begins exactly on the old one).
        frozen = cfg.frozen_actions if cfg.blend == "frozen_prefix" else 1
        start_index = min(frozen, times.size) - 1
        w = np.zeros_like(times)
        after = np.arange(times.size) > start_index
        fade_start = float(times[start_index])
        duration = cfg.crossfade_s
        if old_end > fade_start:
            duration = min(duration, old_end - fade_start)
        if duration <= 0.0:
            w[after] = 1.0
            return w
        u = np.clip((times - fade_start) / duration, 0.0, 1.0)
        # smoothstep: zero slope at both ends, so velocity does not jump where the fade starts
        # or ends (a linear fade would add a velocity step of (new - old) / crossfade_s).
        w = u * u * (3.0 - 2.0 * u)
        w[~after] = 0.0
        return w

    def _check_invariants(self) -> None:
        t, x = self._times, self._targets
        if t.ndim != 1 or x.shape != (t.size, self.dim):
            raise TimelineInvariantError(f"shape mismatch: times {t.shape}, targets {x.shape}")
        if t.size > 1 and not np.all(np.diff(t) > 0.0):
            raise TimelineInvariantError(f"times not strictly increasing: {t}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(x))):
            raise TimelineInvariantError("non-finite time or target in the timeline")


def _interp(times: np.ndarray, values: np.ndarray, at: np.ndarray | list[float]) -> np.ndarray:
    """Piecewise-linear (M, D) values at `at`, holding the end values outside `times`."""
    at = np.asarray(at, dtype=np.float64)
    if times.size == 1:
        return np.repeat(values, at.size, axis=0)
    # all dims share the time grid: one search serves every dim (np.interp per dim repeated
    # it, on every control tick)
    i = clip(np.searchsorted(times, at, side="right"), 1, times.size - 1)
    t0 = times[i - 1]
    w = clip((at - t0) / (times[i] - t0), 0.0, 1.0)[:, None]
    lo = values[i - 1]
    return lo + w * (values[i] - lo)


__all__ = [
    "BLEND_MODES", "ActionTimeline", "Rejection", "SpliceResult", "TimelineConfig",
    "TimelineInvariantError",
]
