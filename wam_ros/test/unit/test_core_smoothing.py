"""Savitzky-Golay chunk smoothing and the per-tick limit enforcer, on both robots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import savgol_filter

from wam_ros.core.robot import RobotSpec
from wam_ros.core.smoothing import (
    SAVGOL_MODES,
    ChunkSmoother,
    LimitEnforcer,
    LimitsConfig,
    SmoothingConfig,
    savgol_smooth,
)
from wam_ros.core.types import Chunk

ROBOTS = ("cobot_magic", "agibot_g1")


@pytest.fixture(scope="module", params=ROBOTS)
def spec(request: pytest.FixtureRequest) -> RobotSpec:
    return RobotSpec.load(request.param)


# ---- Savitzky-Golay ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"window": 20}, "window"), ({"window": 3, "polyorder": 3}, "window"),
     ({"upsample": 0}, "upsample"), ({"mode": "edge"}, "mode"), ({"polyorder": -1}, "polyorder"),
     ({"window": 21.0}, "window")],
)
def test_smoothing_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SmoothingConfig.{field}: got .*allowed"):
        SmoothingConfig(**kwargs)


def test_defaults_are_dreamzero() -> None:
    cfg = SmoothingConfig()
    assert (cfg.upsample, cfg.window, cfg.polyorder) == (2, 21, 3)


@pytest.mark.parametrize("horizon", [2, 3, 5, 8, 11, 16, 48])
def test_ramp_unchanged_curve_nearly(horizon: int) -> None:
    """A cubic local fit reproduces straight motion exactly (including short chunks, where the
    window shrinks); a gentle curve changes only by the linear upsampling's small error."""
    t = np.linspace(0.0, 1.6, horizon)
    ramp = np.stack([0.3 + 0.8 * t, -0.2 * t], axis=1)
    np.testing.assert_allclose(savgol_smooth(ramp), ramp, atol=1e-9)
    if horizon >= 8:  # with fewer samples the "curve" is a corner, not a gentle curve
        curve = (0.05 * t**2)[:, None]
        np.testing.assert_allclose(savgol_smooth(curve), curve, atol=5e-4)


def test_matches_explicit_upsample_filter_downsample() -> None:
    """The documented recipe, done by hand with scipy: upsample 2x, window 21, order 3,
    downsample."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(32, 3)), axis=0)
    fine = np.linspace(0, 31, 63)
    up = np.stack([np.interp(fine, np.arange(32), x[:, d]) for d in range(3)], axis=1)
    expected = savgol_filter(up, 21, 3, axis=0, mode="interp")[::2]
    np.testing.assert_allclose(savgol_smooth(x), expected, atol=1e-12)
    # and it is not the identity on this signal
    assert np.max(np.abs(savgol_smooth(x) - x)) > 0.1


def test_reduces_noise() -> None:
    rng = np.random.default_rng(42)
    t = np.linspace(0.0, 1.6, 48)
    clean = np.stack([np.sin(2.0 * t), 0.5 * np.cos(3.0 * t)], axis=1)
    noisy = clean + rng.normal(scale=0.02, size=clean.shape)
    rms_before = np.sqrt(np.mean((noisy - clean) ** 2))
    rms_after = np.sqrt(np.mean((savgol_smooth(noisy) - clean) ** 2))
    assert rms_after < 0.6 * rms_before
    # the second difference (jerkiness) drops a lot more
    assert np.abs(np.diff(savgol_smooth(noisy), 2, axis=0)).mean() < 0.3 * np.abs(
        np.diff(noisy, 2, axis=0)).mean()


def test_too_short_or_disabled_is_identity() -> None:
    x = np.array([[0.0, 1.0], [5.0, -1.0]])
    np.testing.assert_array_equal(savgol_smooth(x[:1]), x[:1])
    cfg = SmoothingConfig(upsample=1, window=5, polyorder=3)
    np.testing.assert_array_equal(savgol_smooth(x, cfg), x)  # 2 samples: nothing to fit
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 2))
    np.testing.assert_array_equal(savgol_smooth(y, SmoothingConfig(enabled=False)), y)


def test_chunk_smoother_skips_grippers(spec: RobotSpec) -> None:
    rng = np.random.default_rng(3)
    dim = spec.action_dim
    acts = (spec.home_vector() + rng.normal(scale=0.05, size=(40, dim))).astype(np.float32)
    grippers = spec.gripper_mask()
    acts[:, grippers] = np.where(np.arange(40) < 20, 0.0, 1.0)[:, None]  # open/close step
    c = Chunk(stamp=1.0, actions=acts, dt=spec.action_dt)
    out = ChunkSmoother(SmoothingConfig(), grippers)(c)
    np.testing.assert_array_equal(out.actions[:, grippers], acts[:, grippers])
    assert np.abs(out.actions[:, ~grippers] - acts[:, ~grippers]).max() > 1e-3
    assert out.actions.dtype == np.float32 and out.stamp == c.stamp
    both = ChunkSmoother(SmoothingConfig(smooth_grippers=True), grippers)(c)
    assert np.abs(both.actions[:, grippers] - acts[:, grippers]).max() > 1e-3


# ---- limit enforcement -------------------------------------------------------------------
def check_limits(enf: LimitEnforcer, positions: np.ndarray, start: np.ndarray) -> None:
    """positions: (T, D) consecutive commands after reset at `start` (at rest)."""
    p = np.vstack([start, start, positions])  # at rest before the first command
    v = np.diff(p, axis=0) / enf.dt
    acc = np.diff(v, axis=0) / enf.dt
    tol = 1e-9
    assert np.all(positions >= enf.lower - tol) and np.all(positions <= enf.upper + tol)
    assert np.all(np.abs(v) <= enf.velocity * (1 + tol) + tol)
    assert np.all(np.abs(acc) <= enf.acceleration * (1 + 1e-6) + 1e-6)


def test_limits_never_exceeded_under_random_targets(spec: RobotSpec) -> None:
    """Property-style: random targets (jumps, far outside the limits, NaN-free), random
    braking; every command respects position, velocity and acceleration limits."""
    rng = np.random.default_rng(2024)
    enf = LimitEnforcer.from_spec(spec)
    lo, hi = enf.lower, enf.upper
    start = spec.home_vector()
    enf.reset(start)
    out = []
    target = start.copy()
    for k in range(3000):
        r = rng.random()
        if r < 0.05:
            target = rng.uniform(lo - 1.0, hi + 1.0)  # far outside: must clamp
        elif r < 0.15:
            target = rng.uniform(lo, hi)  # big jump inside
        else:
            target = target + rng.normal(scale=0.05, size=target.shape)
        out.append(enf.brake() if k % 97 < 10 else enf.step(target))
    positions = np.array(out)
    check_limits(enf, positions, start)
    # it did move substantially and did reach limits (the test exercised the clamps)
    assert np.any(np.isclose(positions, hi, atol=1e-6)) or np.any(
        np.isclose(positions, lo, atol=1e-6))
    assert np.ptp(positions, axis=0).min() > 0.01


def test_random_start_states_near_limits() -> None:
    """Starting next to a limit while the target lies beyond it never overshoots."""
    spec = RobotSpec.load("cobot_magic")
    rng = np.random.default_rng(7)
    for _ in range(50):
        enf = LimitEnforcer.from_spec(spec, dt=float(rng.uniform(0.002, 0.05)))
        start = np.clip(enf.upper - rng.uniform(0.0, 0.05, enf.dim), enf.lower, enf.upper)
        enf.reset(start)
        out = [enf.step(enf.upper + 1.0) for _ in range(50)]
        out += [enf.step(enf.lower - 1.0) for _ in range(400)]
        check_limits(enf, np.array(out), start)


def test_step_target_reached_without_overshoot() -> None:
    enf = LimitEnforcer(np.array([-3.0]), np.array([3.0]), np.array([1.5]), np.array([8.0]),
                        dt=0.01)
    enf.reset(np.array([0.0]))
    xs = np.array([enf.step(np.array([1.0]))[0] for _ in range(300)])
    assert xs[-1] == pytest.approx(1.0, abs=1e-9)
    assert xs.max() <= 1.0 + 1e-9  # no overshoot
    assert np.all(np.diff(xs) >= -1e-12)  # monotone approach
    # time optimal-ish: reaching 1 rad at 1.5 rad/s, 8 rad/s^2 takes about 0.85 s
    assert np.argmax(xs >= 1.0 - 1e-9) * 0.01 < 1.0


def test_feasible_trajectory_tracked_closely(spec: RobotSpec) -> None:
    """A smooth trajectory well inside the limits is followed with (almost) no lag."""
    enf = LimitEnforcer.from_spec(spec)
    dt = enf.dt
    t = np.arange(0.0, 4.0, dt)
    amp = 0.3 * np.minimum(enf.velocity / 2.0, np.sqrt(enf.acceleration) / 4.0)
    mid = 0.5 * (enf.lower + enf.upper)
    traj = mid + amp * np.sin(np.outer(t, np.ones(enf.dim)))
    enf.reset(traj[0])
    out = np.array([enf.step(x) for x in traj])
    check_limits(enf, out, traj[0])
    assert np.max(np.abs(out[10:] - traj[10:])) < 1e-6


def test_brake_decelerates_within_limits_then_holds() -> None:
    enf = LimitEnforcer(np.array([-10.0]), np.array([10.0]), np.array([2.0]), np.array([4.0]),
                        dt=0.01)
    enf.reset(np.array([0.0]))
    for _ in range(100):
        enf.step(np.array([9.0]))  # reach cruise speed 2 rad/s
    assert enf.velocity_cmd[0] == pytest.approx(2.0)
    p0 = enf.position.copy()
    xs = np.array([enf.brake()[0] for _ in range(100)])
    v = np.diff(np.concatenate([p0, xs])) / 0.01
    assert np.all(np.diff(v) <= 1e-9)  # monotone deceleration
    assert np.all(np.abs(np.diff(v)) <= 4.0 * 0.01 + 1e-9)
    assert enf.stopped and xs[-1] == xs[-2]
    # stopping distance ~ v^2 / 2a = 0.5 rad (not an instant stop, not a long coast)
    assert 0.45 < xs[-1] - p0[0] < 0.55


def test_scaled_limits_and_validation(spec: RobotSpec) -> None:
    enf = LimitEnforcer.from_spec(spec, config=LimitsConfig(velocity_scale=0.5))
    np.testing.assert_allclose(enf.velocity, 0.5 * spec.limits_array("velocity"))
    assert enf.dt == pytest.approx(1.0 / spec.control_rate_hz)
    with pytest.raises(ValueError, match=r"LimitsConfig.velocity_scale: got 1.5; allowed"):
        LimitsConfig(velocity_scale=1.5)
    for gap in (0.0, -0.001, float("nan")):
        with pytest.raises(ValueError, match=r"LimitsConfig.min_command_interval_s: got"):
            LimitsConfig(min_command_interval_s=gap)
    with pytest.raises(RuntimeError, match="before reset"):
        LimitEnforcer.from_spec(spec).step(spec.home_vector())
    with pytest.raises(ValueError, match="finite"):
        enf.reset(np.full(spec.action_dim, np.nan))


def test_reset_outside_limits_clamps_into_them() -> None:
    enf = LimitEnforcer(np.array([0.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]), 0.1)
    enf.reset(np.array([1.2]))
    assert enf.position[0] == 1.0
    assert enf.step(np.array([5.0]))[0] <= 1.0


def test_shorter_steps_respect_limits_over_their_interval(spec: RobotSpec) -> None:
    """Early (shorter) steps mixed with regular ones: velocity and acceleration limits hold
    over each step's own interval, positions stay inside, and a longer step is refused."""
    rng = np.random.default_rng(9)
    enf = LimitEnforcer.from_spec(spec)
    start = spec.home_vector()
    enf.reset(start)
    target, out, steps = start.copy(), [start], []
    for k in range(2000):
        if rng.random() < 0.1:
            target = rng.uniform(enf.lower - 0.5, enf.upper + 0.5)
        dt = enf.dt if rng.random() < 0.6 else float(rng.uniform(0.3, 1.0)) * enf.dt
        out.append(enf.brake(dt) if k % 131 < 8 else enf.step(target, dt))
        steps.append(dt)
    p, dts = np.array(out), np.array(steps)
    assert np.all(p >= enf.lower - 1e-9) and np.all(p <= enf.upper + 1e-9)
    v = np.diff(p, axis=0) / dts[:, None]
    assert np.all(np.abs(v) <= enf.velocity * (1 + 1e-9) + 1e-9)
    acc = np.diff(np.vstack([np.zeros(enf.dim), v]), axis=0) / dts[:, None]
    assert np.all(np.abs(acc) <= enf.acceleration * (1 + 1e-6) + 1e-6)
    with pytest.raises(ValueError, match="dt"):
        enf.step(target, 2 * enf.dt)


def test_lowering_the_velocity_limit_while_moving_brakes_within_the_acceleration_limit():
    """A speed scale lowered live: a joint faster than its new limit slows down to it at the
    acceleration limit, never in one step; then it keeps to the new limit."""
    lower, upper = np.full(2, -10.0), np.full(2, 10.0)
    vmax, amax, dt = np.full(2, 2.0), np.full(2, 4.0), 0.01
    enforcer = LimitEnforcer(lower, upper, vmax, amax, dt)
    enforcer.reset(np.zeros(2))
    target = np.zeros(2)
    speeds = []
    for k in range(300):
        target = target + 2.0 * dt  # a target moving at the velocity limit
        if k == 150:
            enforcer.set_limits(vmax * 0.25, amax)
        before = enforcer.velocity_cmd.copy()
        enforcer.step(target)
        assert np.all(np.abs(enforcer.velocity_cmd - before) <= amax * dt + 1e-9)
        speeds.append(np.abs(enforcer.velocity_cmd).max())
    assert speeds[149] == pytest.approx(2.0)
    assert speeds[151] > 0.5  # not in one step
    assert max(speeds[200:]) <= 0.5 + 1e-9  # then within the new limit


@pytest.mark.parametrize("mode", SAVGOL_MODES)
@pytest.mark.parametrize("upsample", [1, 3])
def test_savgol_smooth_is_the_filter_pipeline_as_one_cached_matrix(mode, upsample):
    """savgol_smooth applies a cached (H, H) operator: the same numbers as upsampling,
    filtering and downsampling each chunk, for every edge mode and chunk length (short ones
    shrink the window, the shortest are left alone)."""
    rng = np.random.default_rng(3)
    config = SmoothingConfig(upsample=upsample, window=21, polyorder=3, mode=mode)
    for horizon in (1, 2, 3, 4, 5, 8, 16, 50):
        actions = rng.normal(size=(horizon, 5))
        n_up = (horizon - 1) * upsample + 1
        window = min(config.window, n_up if n_up % 2 == 1 else n_up - 1)
        if horizon < 2 or window <= config.polyorder:
            expected = actions
        else:
            fine = np.linspace(0.0, horizon - 1.0, n_up)
            up = np.stack([np.interp(fine, np.arange(horizon), actions[:, d])
                           for d in range(5)], 1)
            expected = savgol_filter(up, window, config.polyorder, axis=0, mode=mode)[::upsample]
        np.testing.assert_allclose(savgol_smooth(actions, config), expected, atol=1e-12, rtol=0)
        mask = np.array([True, False, True, True, False])
        masked = savgol_smooth(actions, config, mask)
        np.testing.assert_array_equal(masked[:, ~mask], actions[:, ~mask])
        np.testing.assert_allclose(masked[:, mask], expected[:, mask], atol=1e-12, rtol=0)
