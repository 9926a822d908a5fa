"""Trajectory smoothing and limit enforcement between the timeline and ros2_control.

Two stages, both ROS-free:

- `savgol_smooth` / `ChunkSmoother`: Savitzky-Golay filtering of a chunk's actions the way
  DreamZero does it (upsample 2x, window 21, polynomial order 3, downsample), with
  scipy.signal.savgol_filter. A cubic fit leaves ramps and gentle curves untouched while removing
  the sample-to-sample noise that flow-matching policies produce.
- `LimitEnforcer`: per control tick, turns a target into a command that respects position,
  velocity and acceleration limits per joint, given the previous command. It also brakes ahead of
  the position limits, so clamping never has to stop a joint instantly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy.signal import savgol_filter

from wam_ros.core.numeric import clip
from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Chunk

SAVGOL_MODES = ("interp", "nearest", "mirror", "constant", "wrap")


@dataclass(frozen=True)
class SmoothingConfig:
    """Savitzky-Golay smoothing of chunks (defaults: DreamZero's).

    upsample: factor of linear upsampling before filtering (1 = none).
    window: filter window in upsampled samples (odd, > polyorder); shrunk for short chunks.
    polyorder: order of the local polynomial fit.
    mode: scipy's edge handling; "interp" fits the edge window, so chunk ends are not pulled
        toward padding values.
    smooth_grippers: grippers switch open/closed in steps; a polynomial fit of a step rings, so
        they are left unfiltered unless asked.
    """

    enabled: bool = True  # smooth each chunk before it is spliced into the timeline
    upsample: int = 2
    window: int = 21
    polyorder: int = 3
    mode: str = "interp"
    smooth_grippers: bool = False

    def __post_init__(self) -> None:
        for name in ("upsample", "window", "polyorder"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"SmoothingConfig.{name}: got {value!r}; allowed: an int")
        if self.upsample < 1:
            raise ValueError(f"SmoothingConfig.upsample: got {self.upsample!r}; allowed: >= 1")
        if self.polyorder < 0:
            raise ValueError(
                f"SmoothingConfig.polyorder: got {self.polyorder!r}; allowed: >= 0"
            )
        if self.window % 2 == 0 or self.window <= self.polyorder:
            raise ValueError(
                f"SmoothingConfig.window: got {self.window!r}; allowed: an odd int > polyorder "
                f"({self.polyorder})"
            )
        if self.mode not in SAVGOL_MODES:
            raise ValueError(
                f"SmoothingConfig.mode: got {self.mode!r}; allowed: {', '.join(SAVGOL_MODES)}"
            )


def savgol_smooth(
    actions: np.ndarray, config: SmoothingConfig | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """(H, D) -> (H, D) smoothed copy; dims where `mask` is False are returned unchanged.

    Short chunks shrink the window to the longest odd length that fits; when even that cannot
    exceed the polynomial order, the actions are returned unchanged (nothing to fit).
    """
    config = config or SmoothingConfig()
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2:
        raise ValueError(f"actions must be (H, D), got {actions.shape}")
    out = actions.copy()
    if not config.enabled:
        return out
    cols = np.ones(actions.shape[1], dtype=bool) if mask is None else np.asarray(mask, bool)
    if cols.shape != (actions.shape[1],):
        raise ValueError(f"mask must be ({actions.shape[1]},), got {cols.shape}")
    horizon = actions.shape[0]
    if horizon < 2 or not cols.any():
        return out
    operator = _savgol_operator(horizon, config.upsample, config.window, config.polyorder,
                                config.mode)
    if operator is None:
        return out
    out[:, cols] = operator @ actions[:, cols]
    return out


@lru_cache(maxsize=64)
def _savgol_operator(horizon: int, u: int, window: int, polyorder: int, mode: str
                     ) -> np.ndarray | None:
    """The (H, H) matrix that smooths a chunk of `horizon` actions: linear upsampling by `u`,
    Savitzky-Golay over `window`, back to the action times. Every step is linear in the
    actions, so it is that pipeline applied once to the identity and then one matrix product
    per chunk, instead of the filter's coefficients and edge fits recomputed for every chunk
    (docs/results/2026-12-06-realtime-default.md).
    None: nothing to fit (the window that fits cannot exceed the polynomial order)."""
    n_up = (horizon - 1) * u + 1
    window = min(window, n_up if n_up % 2 == 1 else n_up - 1)
    if window <= polyorder:
        return None
    # Linear upsampling keeps every original sample at index k*u, so downsampling by u returns
    # values at exactly the original action times.
    fine = np.linspace(0.0, horizon - 1.0, n_up)
    coarse = np.arange(horizon, dtype=np.float64)
    identity = np.eye(horizon)
    up = np.stack([np.interp(fine, coarse, identity[:, k]) for k in range(horizon)], 1)
    operator = savgol_filter(up, window, polyorder, axis=0, mode=mode)[::u]
    operator.setflags(write=False)
    return operator


class ChunkSmoother:
    """Applies `savgol_smooth` to absolute-space chunks, skipping gripper dims by default."""

    def __init__(self, config: SmoothingConfig | None = None,
                 gripper_mask: np.ndarray | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._mask: np.ndarray | None = None
        if gripper_mask is not None and not self.config.smooth_grippers:
            self._mask = ~np.asarray(gripper_mask, dtype=bool)

    def __call__(self, chunk: Chunk) -> Chunk:
        if not self.config.enabled:
            return chunk
        smoothed = savgol_smooth(chunk.actions, self.config, self._mask)
        return replace(chunk, actions=smoothed.astype(np.float32))


@dataclass(frozen=True)
class LimitsConfig:
    """Scales applied to the robot's velocity/acceleration limits (e.g. 0.5 for a first run)."""

    velocity_scale: float = 1.0  # share of each joint's velocity limit used, (0, 1]; live
    acceleration_scale: float = 1.0  # share of each joint's acceleration limit used; live
    # commands are at least this far apart (s, below the control period): a fresh plan's
    # first command goes out this long after the previous command at the soonest, limited
    # over that interval, instead of waiting for the next control tick
    min_command_interval_s: float = 0.002

    def __post_init__(self) -> None:
        for name in ("velocity_scale", "acceleration_scale"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 < value <= 1.0):
                raise ValueError(f"LimitsConfig.{name}: got {value!r}; allowed: (0, 1]")
        if not (np.isfinite(self.min_command_interval_s) and self.min_command_interval_s > 0):
            raise ValueError(f"LimitsConfig.min_command_interval_s: got "
                             f"{self.min_command_interval_s!r}; allowed: > 0 seconds, below "
                             "the control period")


class LimitEnforcer:
    """Stateful per-tick limiter: position, velocity and acceleration limits per joint.

    Guarantees, for every command after `reset` from a state inside the limits:
    lower <= p <= upper, |p_k - p_{k-1}| <= velocity * dt and
    |v_k - v_{k-1}| <= acceleration * dt with v_k = (p_k - p_{k-1}) / dt.

    Targets are tracked with the target's own velocity as feed-forward plus a braking-curve
    feedback term, so a moving target is followed without lag and a step is approached without
    overshoot. Toward each position limit the velocity is capped so the joint can always stop
    in time; that is what keeps the position clamp from ever having to stop a joint instantly.
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, velocity: np.ndarray,
                 acceleration: np.ndarray, dt: float) -> None:
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.velocity = np.asarray(velocity, dtype=np.float64)
        self.acceleration = np.asarray(acceleration, dtype=np.float64)
        dim = self.lower.shape
        for name in ("upper", "velocity", "acceleration"):
            if getattr(self, name).shape != dim:
                raise ValueError(f"LimitEnforcer.{name}: shape {getattr(self, name).shape}, "
                                 f"allowed: {dim} like lower")
        if not np.all(self.lower < self.upper):
            raise ValueError("LimitEnforcer: lower must be < upper for every joint")
        if not (np.all(self.velocity > 0) and np.all(self.acceleration > 0)):
            raise ValueError("LimitEnforcer: velocity and acceleration limits must be > 0")
        if not dt > 0.0:
            raise ValueError(f"LimitEnforcer.dt: got {dt!r}; allowed: > 0 seconds")
        self.dt = float(dt)
        # (dt, _limit_terms(dt)) for the last dt stepped with (None: none yet, or new limits)
        self._terms: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.position: np.ndarray | None = None  # last command (D,)
        self.velocity_cmd = np.zeros_like(self.lower)  # (D,) velocity of the last command
        self._last_target: np.ndarray | None = None

    @classmethod
    def from_spec(cls, spec: RobotSpec, dt: float | None = None,
                  config: LimitsConfig | None = None) -> LimitEnforcer:
        config = config or LimitsConfig()
        return cls(
            spec.limits_array("lower"), spec.limits_array("upper"),
            spec.limits_array("velocity") * config.velocity_scale,
            spec.limits_array("acceleration") * config.acceleration_scale,
            dt if dt is not None else 1.0 / spec.control_rate_hz,
        )

    @property
    def dim(self) -> int:
        return self.lower.size

    @property
    def initialised(self) -> bool:
        return self.position is not None

    def reset(self, position: np.ndarray, velocity: np.ndarray | None = None) -> None:
        """Start from a measured state. A position outside the limits is clamped (the one
        case where a command can jump: commands never leave the limits)."""
        position = np.asarray(position, dtype=np.float64)
        if position.shape != self.lower.shape or not np.all(np.isfinite(position)):
            raise ValueError(f"reset: expected finite {self.lower.shape}, got {position}")
        self.position = np.clip(position, self.lower, self.upper)
        v = np.zeros_like(position) if velocity is None else np.asarray(velocity, np.float64)
        self.velocity_cmd = np.clip(v, -self.velocity, self.velocity)
        self._last_target = None

    def step(self, target: np.ndarray, dt: float | None = None) -> np.ndarray:
        """(D,) next command toward `target` (clipped to the position limits first), `dt`
        seconds after the previous one (default: the control period; shorter for a command
        sent early, e.g. right when a new plan arrives; never longer)."""
        if self.position is None:
            raise RuntimeError("LimitEnforcer.step before reset(position)")
        target = np.asarray(target, dtype=np.float64)
        if target.shape != self.lower.shape or not np.isfinite(target).all():
            raise ValueError(f"step: expected finite {self.lower.shape} target, got {target}")
        target = clip(target, self.lower, self.upper)
        dt = self._interval(dt)
        terms = self._limit_terms(dt)
        adt = terms[0]
        # Feed-forward: the target's own velocity (0 on the first tick after reset).
        if self._last_target is None:
            v_target = np.zeros_like(target)
        else:
            v_target = clip((target - self._last_target) / dt, -self.velocity, self.velocity)
        self._last_target = target
        # Moving with the target closes (target - position) - v_target*dt by itself; the rest,
        # `gap`, is closed in one tick if possible, but with a relative speed no higher than
        # one from which braking at `a` still stops on the target (no overshoot). Relative
        # speeds up to a*dt stop within one tick, so they are always allowed (else the last
        # micro-radians, where the braking speed is 0, would never close).
        gap = target - self.position - v_target * dt
        distance = np.abs(gap)
        correction = np.minimum(distance / dt,
                                np.maximum(_braking_speed(distance, *terms), adt))
        desired = v_target + np.sign(gap) * correction
        return self._apply(desired, dt, terms)

    def brake(self, dt: float | None = None) -> np.ndarray:
        """(D,) next command of a maximal-deceleration stop (holds once stopped)."""
        if self.position is None:
            raise RuntimeError("LimitEnforcer.brake before reset(position)")
        self._last_target = None
        dt = self._interval(dt)
        return self._apply(np.zeros_like(self.position), dt, self._limit_terms(dt))

    def release(self) -> None:
        """Forget the command state: the next `reset` starts it again (from a measurement)."""
        self.position = None
        self.velocity_cmd = np.zeros_like(self.lower)
        self._last_target = None

    def set_limits(self, velocity: np.ndarray, acceleration: np.ndarray) -> None:
        """New velocity and acceleration limits while running (a speed scale changed live).
        A joint moving faster than its new velocity limit slows down to it at its (new)
        acceleration limit, never in one step (see _apply)."""
        velocity = np.asarray(velocity, dtype=np.float64)
        acceleration = np.asarray(acceleration, dtype=np.float64)
        if velocity.shape != self.lower.shape or acceleration.shape != self.lower.shape or not (
                np.all(velocity > 0) and np.all(acceleration > 0)):
            raise ValueError("set_limits: positive velocity and acceleration per joint")
        self.velocity, self.acceleration = velocity, acceleration
        self._terms = None

    def _limit_terms(self, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a dt, (a dt)^2, 2 a) per joint for steps of `dt`, kept while dt and the limits
        stay (every regular tick), each computed as the formulas write it."""
        if self._terms is None or self._terms[0] != dt:
            adt = self.acceleration * dt
            self._terms = (dt, (adt, adt ** 2, 2.0 * self.acceleration))
        return self._terms[1]

    def _interval(self, dt: float | None) -> float:
        if dt is None:
            return self.dt
        if not 0.0 < dt <= self.dt:
            raise ValueError(f"dt: got {dt!r}; allowed: 0 < dt <= the period {self.dt}")
        return float(dt)

    @property
    def stopped(self) -> bool:
        return bool(np.all(self.velocity_cmd == 0.0))

    def _apply(self, desired: np.ndarray, dt: float,
               terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """The command for velocity `desired` over `dt`; `terms`: _limit_terms(dt)."""
        assert self.position is not None
        adt = terms[0]
        v_prev, position = self.velocity_cmd, self.position
        # Priority from least to most important, later clips win: acceleration, velocity,
        # room to brake before each position limit. From a state inside the limits the later
        # clips never bind against the earlier ones (the braking cap is invariant under a
        # maximal-deceleration step of any length, see _braking_speed), so all three hold
        # together, for regular and early (shorter) steps alike.
        v = clip(desired, v_prev - adt, v_prev + adt)
        # above the velocity limit only after it was lowered (set_limits): brake down to it
        vmax = np.maximum(self.velocity, np.abs(v_prev) - adt)
        v = clip(v, -vmax, vmax)
        v = np.minimum(v, _braking_speed(self.upper - position, *terms))
        v = np.maximum(v, -_braking_speed(position - self.lower, *terms))
        new = clip(position + v * dt, self.lower, self.upper)
        self.velocity_cmd = (new - position) / dt
        self.position = new
        return new.copy()


def _braking_speed(distance: np.ndarray, adt: np.ndarray, adt2: np.ndarray,
                   two_a: np.ndarray) -> np.ndarray:
    """Largest speed v for a step of `dt` after which the joint can still stop within
    `distance`: after moving v*dt, v <= sqrt(2 a (distance - v dt)), i.e.
    v = sqrt(a^2 dt^2 + 2 a distance) - a dt (adt = a dt, adt2 = (a dt)^2, two_a = 2 a).

    The bound holds for steps of any length: from v <= sqrt(2 a d), one step of length h at
    maximal deceleration gives v' = v - a h with v'^2 <= 2 a (d - v' h) - a^2 h^2, so that
    step always satisfies the cap computed for it. Acceleration, velocity and this cap
    therefore never contradict each other, whatever mix of short and regular steps is taken.
    """
    return np.sqrt(adt2 + two_a * np.maximum(distance, 0.0)) - adt


__all__ = [
    "SAVGOL_MODES", "ChunkSmoother", "LimitEnforcer", "LimitsConfig", "SmoothingConfig",
    "savgol_smooth",
]
