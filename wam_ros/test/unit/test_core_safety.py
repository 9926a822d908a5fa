"""SafetyMonitor and CommandPipeline with a fake clock and a fake robot that follows commands:
e-stop mid-chunk, watchdog expiry, deviation faults, NaN guards, limits under random input."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.pipeline import (
    CommandPipeline,
    PipelineConfig,
    PipelineOutput,
    PipelineState,
    thresholds_per_joint,
)
from wam_ros.core.robot import RobotSpec
from wam_ros.core.safety import (
    DEVIATION,
    ESTOP,
    WATCHDOG_CHUNK,
    WATCHDOG_OBSERVATION,
    SafetyConfig,
    SafetyMonitor,
)
from wam_ros.core.smoothing import LimitsConfig, SmoothingConfig
from wam_ros.core.timeline import Rejection, TimelineConfig
from wam_ros.core.types import ActionSpace, Chunk

ROBOTS = ("cobot_magic", "agibot_g1")


@pytest.fixture(scope="module", params=ROBOTS)
def spec(request: pytest.FixtureRequest) -> RobotSpec:
    return RobotSpec.load(request.param)


class Rig:
    """Pipeline + fake clock + a robot whose measured position is the last command."""

    def __init__(self, spec: RobotSpec, **safety: object) -> None:
        self.spec = spec
        self.logs: list[str] = []
        cfg = PipelineConfig(safety=SafetyConfig(**safety))  # type: ignore[arg-type]
        self.pipe = CommandPipeline(spec, cfg, logger=self.logs.append)
        self.now = 0.0
        self.measured = spec.home_vector()
        self.outputs: list[PipelineOutput] = []
        first = self.pipe.step(self.now, self.measured)
        assert first is not None
        self.outputs.append(first)
        self.measured = first.positions

    def run(self, seconds: float) -> list[PipelineOutput]:
        out = []
        for _ in range(round(seconds / self.pipe.dt)):
            self.now += self.pipe.dt
            o = self.pipe.step(self.now, self.measured)
            assert o is not None
            out.append(o)
            self.measured = o.positions
        self.outputs += out
        return out

    def sweep_chunk(self, amplitude: float = 0.4, horizon: int = 48, stamp: float | None = None,
                    rate: float = 1.5) -> Chunk:
        """A chunk moving every arm joint away from home at a fair speed (rad/s: up to
        amplitude * rate)."""
        stamp = self.now if stamp is None else stamp
        t = np.arange(horizon) * self.spec.action_dt
        motion = amplitude * np.sin(rate * t)[:, None] * ~self.spec.gripper_mask()
        acts = (self.spec.home_vector() + motion).astype(np.float32)
        return Chunk(stamp=stamp, actions=acts, dt=self.spec.action_dt)

    def positions(self) -> np.ndarray:
        return np.array([o.positions for o in self.outputs])


def assert_within_limits(spec: RobotSpec, positions: np.ndarray, dt: float) -> None:
    """positions (T, D) consecutive commands, starting at rest."""
    lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
    vmax, amax = spec.limits_array("velocity"), spec.limits_array("acceleration")
    assert np.all(np.isfinite(positions))
    assert np.all(positions >= lo - 1e-9) and np.all(positions <= hi + 1e-9)
    p = np.vstack([positions[:1], positions])
    v = np.diff(p, axis=0) / dt
    assert np.all(np.abs(v) <= vmax * (1 + 1e-9) + 1e-9), "velocity limit exceeded"
    acc = np.diff(v, axis=0) / dt
    assert np.all(np.abs(acc) <= amax * (1 + 1e-6) + 1e-6), "acceleration limit exceeded"


# ---- config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"chunk_timeout_s": -1.0}, "chunk_timeout_s"),
     ({"observation_timeout_s": float("nan")}, "observation_timeout_s"),
     ({"deviation_threshold": 0.0}, "deviation_threshold"),
     ({"deviation_threshold": (0.1, -0.2)}, "deviation_threshold"),
     ({"deviation_cycles": 0}, "deviation_cycles")],
)
def test_safety_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SafetyConfig.{field}: got .*allowed"):
        SafetyConfig(**kwargs)


def test_pipeline_config_rejects_wrong_section_and_dt() -> None:
    with pytest.raises(ValueError, match=r"PipelineConfig\.smoothing: got .*allowed: a Smoothing"):
        PipelineConfig(smoothing={"window": 21})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PipelineConfig\.control_dt: got 0\.0"):
        PipelineConfig(control_dt=0.0)


def test_deviation_threshold_per_joint_length_checked(spec: RobotSpec) -> None:
    per_joint = thresholds_per_joint(spec, arm=0.3, gripper=0.01)
    assert len(per_joint) == spec.action_dim
    SafetyMonitor(SafetyConfig(deviation_threshold=per_joint), spec.action_dim)
    with pytest.raises(ValueError, match=f"allowed: 1 or {spec.action_dim}"):
        SafetyMonitor(SafetyConfig(deviation_threshold=(0.1, 0.2)), spec.action_dim)


# ---- start -------------------------------------------------------------------------------
def test_waits_for_measurement_then_starts_without_jump(spec: RobotSpec) -> None:
    pipe = CommandPipeline(spec)
    assert pipe.step(0.0, None) is None
    assert pipe.step(0.01, np.full(spec.action_dim, np.nan)) is None
    assert pipe.monitor.counters()["bad_measurement"] == 1
    # a chunk far from the current pose is already waiting before the first measurement
    far = np.clip(spec.home_vector() + 0.5, spec.limits_array("lower"),
                  spec.limits_array("upper"))
    pipe.offer_chunk(Chunk(0.0, np.tile(far, (30, 1)).astype(np.float32), spec.action_dt),
                     now=0.0)
    measured = spec.home_vector()
    out = pipe.step(0.02, measured)
    assert out is not None
    amax = spec.limits_array("acceleration")
    # first command: at most one tick of acceleration away from the measured pose
    assert np.all(np.abs(out.positions - measured) <= amax * pipe.dt**2 + 1e-12)


# ---- e-stop ------------------------------------------------------------------------------
def test_estop_mid_chunk_decelerates_and_stays_stopped_until_reenable(spec: RobotSpec) -> None:
    rig = Rig(spec)
    # fast enough that braking takes several ticks at the acceleration limits
    assert rig.pipe.offer_chunk(rig.sweep_chunk(rate=4.0), rig.now).accepted
    rig.run(0.3)
    assert rig.pipe.state is PipelineState.RUNNING
    # ticks the fastest joint needs to brake at its acceleration limit
    brake_ticks = np.max(np.abs(rig.outputs[-1].velocities)
                         / (spec.limits_array("acceleration") * rig.pipe.dt))
    assert brake_ticks > 2  # really moving when the stop comes
    rig.pipe.estop(rig.now, "operator pressed e-stop")
    stopping = rig.run(1.5)
    vel = np.array([o.velocities for o in stopping])
    # decelerates: per joint, |v| never increases, and is zero at the end
    assert np.all(np.diff(np.abs(vel), axis=0) <= 1e-9)
    assert np.all(vel[-1] == 0.0)
    assert stopping[0].state is PipelineState.STOPPING and stopping[0].reason == ESTOP
    assert stopping[-1].state is PipelineState.STOPPED
    # not an instant stop either: it took as many ticks as the acceleration limit requires
    ticks = sum(o.state is PipelineState.STOPPING for o in stopping)
    assert ticks >= int(brake_ticks) >= 2
    held = stopping[-1].positions.copy()
    # new chunks are refused while latched, the arm stays put
    for k in range(5):
        result = rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=0.3), rig.now)
        assert not result.accepted and result.reason is Rejection.STOPPED
        for o in rig.run(0.2):
            np.testing.assert_array_equal(o.positions, held)
            assert o.state is PipelineState.STOPPED, k
    assert rig.pipe.monitor.counters()["chunk_stopped"] == 5
    assert rig.pipe.diagnostics(rig.now)["stop_reason"] == ESTOP
    # the e-stop is logged once, despite hundreds of stopped ticks
    assert sum("refused (estop)" in m for m in rig.logs) == 1
    # re-enable, new chunk: moves again, from the held pose, without a jump
    assert rig.pipe.reenable(rig.now)
    assert not rig.pipe.reenable(rig.now)  # nothing left to clear
    assert rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=-0.3), rig.now).accepted
    resumed = rig.run(1.0)
    assert resumed[-1].state is PipelineState.RUNNING
    assert np.abs(resumed[-1].positions - held).max() > 0.05
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_monitor_estop_keeps_first_reason_and_counts() -> None:
    mon = SafetyMonitor(SafetyConfig(), dim=2)
    mon.estop(1.0, DEVIATION, "x")
    mon.estop(2.0, ESTOP, "y")
    assert mon.latched == DEVIATION and mon.stop_reason(3.0) == DEVIATION
    assert mon.counters() == {DEVIATION: 1, ESTOP: 1}
    assert mon.reenable(4.0) and mon.latched is None and mon.stop_reason(4.0) is None


# ---- watchdog ----------------------------------------------------------------------------
def test_chunk_watchdog_decelerates_to_hold_without_jump_then_recovers(spec: RobotSpec) -> None:
    rig = Rig(spec, chunk_timeout_s=0.6, observation_timeout_s=0.0)
    # a long chunk, so only the watchdog (not the end of the plan) can stop the arm
    assert rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now).accepted
    running = rig.run(0.5)
    assert all(o.state is PipelineState.RUNNING for o in running[5:])
    assert np.abs(running[-1].velocities).max() > 0.2
    expired = rig.run(1.5)
    expired = expired[next(i for i, o in enumerate(expired) if o.reason):]
    assert expired[0].reason == WATCHDOG_CHUNK and expired[0].state is PipelineState.HOLDING
    vel = np.array([o.velocities for o in expired])
    assert np.all(np.diff(np.abs(vel), axis=0) <= 1e-9) and np.all(vel[-1] == 0.0)
    assert sum("refused (watchdog_chunk)" in m for m in rig.logs) == 1
    assert rig.pipe.monitor.counters()[WATCHDOG_CHUNK] == 1
    # a fresh chunk clears the watchdog (no re-enable needed) and motion resumes smoothly
    held = expired[-1].positions.copy()
    assert rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=-0.3), rig.now).accepted
    resumed = rig.run(0.5)
    assert resumed[-1].state is PipelineState.RUNNING
    assert np.abs(resumed[-1].positions - held).max() > 0.02
    assert any("watchdog_chunk: cleared" in m for m in rig.logs)
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_observation_watchdog(spec: RobotSpec) -> None:
    rig = Rig(spec, observation_timeout_s=0.3, chunk_timeout_s=0.0)
    rig.pipe.offer_observation(rig.now)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=90), rig.now)
    out = rig.run(0.25)
    assert out[-1].state is PipelineState.RUNNING
    out = rig.run(0.1)
    assert out[-1].reason == WATCHDOG_OBSERVATION
    rig.pipe.offer_observation(rig.now)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=90), rig.now)
    out = rig.run(0.1)
    assert out[-1].state is PipelineState.RUNNING


def test_watchdogs_only_arm_after_first_message() -> None:
    mon = SafetyMonitor(SafetyConfig(chunk_timeout_s=0.1, observation_timeout_s=0.1), dim=1)
    assert mon.stop_reason(100.0) is None
    mon.feed_chunk(100.0)
    assert mon.stop_reason(100.05) is None
    assert mon.stop_reason(100.2) == WATCHDOG_CHUNK


# ---- deviation ---------------------------------------------------------------------------
def test_deviation_latches_after_consecutive_cycles(spec: RobotSpec) -> None:
    # no lag allowance: compare with the current command only
    rig = Rig(spec, deviation_threshold=0.1, deviation_cycles=3, tracking_window_s=0.0)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now)
    rig.run(0.2)
    # one bad sample (sensor glitch) does not stop the robot
    rig.measured = rig.measured + 0.5
    rig.run(rig.pipe.dt)
    assert rig.pipe.monitor.latched is None
    # the arm is blocked: measured stays behind by 0.2 rad on joint 0
    for _ in range(3):
        rig.now += rig.pipe.dt
        stuck = rig.outputs[-1].positions.copy()
        stuck[0] -= 0.2
        o = rig.pipe.step(rig.now, stuck)
        assert o is not None
        rig.outputs.append(o)
        rig.measured = o.positions
    assert rig.pipe.monitor.latched == DEVIATION
    assert rig.outputs[-1].state in (PipelineState.STOPPING, PipelineState.STOPPED)
    assert any("refused (deviation)" in m and "joints [0]" in m for m in rig.logs)
    out = rig.run(1.0)
    assert out[-1].state is PipelineState.STOPPED
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_a_gripper_closed_on_an_object_is_not_a_deviation(spec: RobotSpec) -> None:
    """A gripper holding an object never reaches its closed command (G1's normalised gripper
    stops at 0.09 of 1 around the cube): no stop for that, unless deviation_grippers asks (an
    arm joint held back still stops the robot: test_deviation_latches_after_consecutive_cycles,
    with the same pipeline and its gripper mask)."""
    grip = spec.gripper_mask()
    joint = int(np.flatnonzero(grip)[0])
    span = spec.limits_array("upper") - spec.limits_array("lower")
    threshold = np.where(grip, 0.1 * span, 0.1)  # grippers: a tenth of their range
    for check_grippers in (False, True):
        rig = Rig(spec, deviation_threshold=tuple(threshold.tolist()), deviation_cycles=3,
                  tracking_window_s=0.3, deviation_grippers=check_grippers)
        acts = np.repeat(spec.home_vector()[None], 60, 0).astype(np.float32)
        closed = spec.action_to_joint(np.zeros(spec.action_dim))[joint]
        acts[10:, joint] = closed  # close
        rig.pipe.offer_chunk(Chunk(stamp=rig.now, actions=acts, dt=spec.action_dt), rig.now)
        blocked = spec.home_vector()[joint] + 0.2 * (closed - spec.home_vector()[joint])
        for _ in range(round(1.5 / rig.pipe.dt)):
            rig.now += rig.pipe.dt
            measured = rig.outputs[-1].positions.copy()
            if abs(measured[joint] - spec.home_vector()[joint]) > abs(
                    blocked - spec.home_vector()[joint]):
                measured[joint] = blocked  # the object stops the fingers
            rig.outputs.append(rig.pipe.step(rig.now, measured))
        gap = abs(rig.outputs[-1].positions[joint] - blocked)
        assert gap > 5 * threshold[joint]  # far beyond the threshold
        if check_grippers:
            assert rig.pipe.monitor.latched == DEVIATION
        else:
            assert rig.pipe.monitor.latched is None
            assert rig.outputs[-1].state is PipelineState.RUNNING


def test_deviation_tolerates_tracking_lag_but_not_a_stuck_arm(spec: RobotSpec) -> None:
    rig = Rig(spec, deviation_threshold=0.1, deviation_cycles=3, tracking_window_s=0.3)
    rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=0.8, horizon=120), rig.now)
    lag = round(0.15 / rig.pipe.dt)  # the arm follows its commands 150 ms late
    behind = 0.0
    for _ in range(round(1.5 / rig.pipe.dt)):
        rig.now += rig.pipe.dt
        late = rig.outputs[-lag].positions if len(rig.outputs) > lag else rig.outputs[0].positions
        rig.outputs.append(rig.pipe.step(rig.now, late))
        behind = max(behind, np.abs(rig.outputs[-1].positions - late).max())
    assert behind > 0.1  # the lag alone exceeds the threshold...
    assert rig.pipe.monitor.latched is None  # ...and is not a fault
    # the arm blocks: its measurement freezes while the commands move on
    stuck = rig.outputs[-lag].positions.copy()
    for _ in range(round(1.0 / rig.pipe.dt)):
        rig.now += rig.pipe.dt
        rig.outputs.append(rig.pipe.step(rig.now, stuck))
    assert rig.pipe.monitor.latched == DEVIATION


def test_reenable_is_refused_while_the_arm_is_still_blocked_then_resumes_without_a_jump(
        spec: RobotSpec) -> None:
    """An arm pushed into the table latches DEVIATION. Re-enabling is refused while the arm
    is still farther from the held command than the deviation limit (the cause persists),
    with the joint named; once the obstacle is gone and the arm is back on the held command,
    it is accepted, the commands continue from the held command (no jump to the measurement)
    and homing works."""
    rig = Rig(spec, deviation_threshold=0.1, deviation_cycles=3, tracking_window_s=0.0)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now)
    rig.run(0.2)
    blocked = rig.outputs[-1].positions.copy()
    blocked[0] += 0.3  # the table stops joint 0 short of its command
    for _ in range(round(1.0 / rig.pipe.dt)):
        rig.now += rig.pipe.dt
        rig.outputs.append(rig.pipe.step(rig.now, blocked))
    assert rig.pipe.monitor.latched == DEVIATION
    held = rig.outputs[-1].positions.copy()
    assert np.abs(held - blocked).max() > 0.2
    refused = rig.pipe.reenable(rig.now)
    assert not refused and spec.action_layout[0] in refused.message
    assert "deviation limit" in refused.message and rig.pipe.monitor.latched == DEVIATION
    # the obstacle is gone: the arm returns to the held command
    rig.measured = held
    rig.run(0.1)
    assert rig.pipe.reenable(rig.now)
    rig.now += rig.pipe.dt
    hold = rig.pipe.step(rig.now, held)
    np.testing.assert_allclose(hold.positions, held)  # continuous with the held command
    duration = rig.pipe.go_home(rig.now)
    rig.run(duration + 0.5)  # the arm follows its commands exactly (Rig's default)
    assert rig.pipe.monitor.latched is None
    np.testing.assert_allclose(rig.outputs[-1].positions, spec.home_vector(), atol=1e-3)
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_reenable_refused_while_the_estop_is_asserted_or_the_measurement_is_implausible(
        spec: RobotSpec) -> None:
    """The e-stop input still true, or joint states reading far outside the limits (100 rad):
    re-enabling is refused with the reason, and the limiter is never reset to such a reading.
    Once the cause is gone, the first commands start at the held pose within the limits."""
    rig = Rig(spec, observation_timeout_s=0.5)
    rig.pipe.offer_observation(rig.now, rig.measured)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now)
    rig.run(0.3)
    rig.pipe.estop(rig.now, "operator")
    held = rig.run(1.0)[-1].positions.copy()
    result = rig.pipe.reenable(rig.now, estop_asserted=True)
    assert not result and "asserted" in result.message
    crazy = np.full(spec.action_dim, 100.0)
    rig.pipe.refuse_measurement(rig.now, "out_of_limits", "reads 100")
    for _ in range(10):  # the implausible readings reach step too: refused there as well
        rig.now += rig.pipe.dt
        out = rig.pipe.step(rig.now, crazy)
        np.testing.assert_array_equal(out.positions, held)
    result = rig.pipe.reenable(rig.now)
    assert not result and "out_of_limits" in result.message
    assert rig.pipe.monitor.latched == ESTOP
    # a silent joint-state stream blocks it too
    rig.run(0.6)
    assert not rig.pipe.reenable(rig.now)
    # good readings again: accepted, and no step anywhere beyond the limits
    rig.pipe.offer_observation(rig.now, held)
    rig.run(0.05)
    assert rig.pipe.reenable(rig.now)
    assert rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=-0.3), rig.now).accepted
    rig.pipe.offer_observation(rig.now, held)
    rig.run(0.4)
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)
    levels = [lvl for lvl, _ in rig.pipe.conditions(rig.now)]
    assert levels == [0]


def test_offered_measurements_a_refusal_is_never_undone_by_an_older_reading(
        spec: RobotSpec) -> None:
    """A node's ticks step on the newest offered joint state (`offered=True`): once a reading
    is refused, the ticks that follow have no pose to compare with and re-enabling stays
    refused until a valid reading is offered; that one is what the next tick starts from."""
    pipe = CommandPipeline(spec, PipelineConfig(safety=SafetyConfig(observation_timeout_s=0.5)))
    now, home = 0.0, spec.home_vector()
    assert pipe.step(now, offered=True) is None  # nothing offered yet: nothing commanded
    pipe.offer_observation(now, home)
    for _ in range(5):
        now += pipe.dt
        assert pipe.step(now, offered=True) is not None
    pipe.estop(now, "operator")
    pipe.refuse_measurement(now, "out_of_limits", "reads 100")
    for _ in range(10):  # ticks without a new reading: the refusal stands
        now += pipe.dt
        pipe.step(now, offered=True)
    result = pipe.reenable(now)
    assert not result and "out_of_limits" in result.message
    pipe.offer_observation(now, home)
    assert pipe.reenable(now)
    with pytest.raises(ValueError, match="not both"):
        pipe.step(now + pipe.dt, home, offered=True)


def test_a_clock_jumping_back_does_not_wedge_the_pipeline(spec: RobotSpec) -> None:
    """Sim reset / bag loop: the clock goes back 100 s mid-plan. The pipeline keeps commanding
    (within the limits, continuous), accepts the next chunk on the new clock, and its
    watchdogs still expire on the new clock."""
    rig = Rig(spec, chunk_timeout_s=0.5, observation_timeout_s=0.0)
    assert rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now).accepted
    rig.run(0.5)
    rig.now -= 100.0
    rig.pipe.on_clock_jump(rig.now)
    out = rig.run(0.3)
    assert out[-1].state is PipelineState.HOLDING  # old plan dropped: decelerating
    assert rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=-0.2), rig.now).accepted
    assert rig.run(0.2)[-1].state is PipelineState.RUNNING
    out = rig.run(1.0)  # no chunk since: the chunk watchdog expires on the new clock
    assert out[-1].reason == WATCHDOG_CHUNK
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_a_chunk_from_the_future_is_refused_and_not_remembered(spec: RobotSpec) -> None:
    rig = Rig(spec)
    result = rig.pipe.offer_chunk(rig.sweep_chunk(stamp=rig.now + 3600.0), rig.now)
    assert not result.accepted and result.reason is Rejection.FUTURE
    assert rig.pipe.offer_chunk(rig.sweep_chunk(stamp=rig.now + 0.4), rig.now).accepted
    rig.run(0.5)
    assert rig.pipe.offer_chunk(rig.sweep_chunk(), rig.now).accepted


# ---- guards and logging ------------------------------------------------------------------
def test_nan_and_malformed_chunks_refused_counted_logged_throttled(spec: RobotSpec) -> None:
    rig = Rig(spec)
    bad = rig.sweep_chunk()
    bad.actions[5, 2] = np.nan
    for k in range(10):
        bad.stamp = rig.now
        result = rig.pipe.offer_chunk(bad, rig.now)
        assert result.reason is Rejection.NON_FINITE
        rig.run(0.1)
        assert k < 9 or rig.pipe.timeline.empty
    counters = rig.pipe.monitor.counters()
    assert counters["chunk_non_finite"] == 10
    assert sum("refused (chunk_non_finite)" in m for m in rig.logs) == 1  # throttled
    rig.run(5.0)
    bad.stamp = rig.now
    rig.pipe.offer_chunk(bad, rig.now)
    assert any("9 more since the last report" in m for m in rig.logs)
    wrong = Chunk(rig.now, np.zeros((5, spec.action_dim + 1), np.float32), spec.action_dt)
    assert rig.pipe.offer_chunk(wrong, rig.now).reason is Rejection.WRONG_DIM
    delta = Chunk(rig.now, np.zeros((5, spec.action_dim), np.float32), spec.action_dt,
                  space=ActionSpace.JOINT_DELTA)
    assert rig.pipe.offer_chunk(delta, rig.now).reason is Rejection.WRONG_SPACE
    diag = rig.pipe.diagnostics(rig.now)
    assert diag["refused.chunk_non_finite"] == 11
    assert diag["timeline.rejected_wrong_dim"] == 1
    assert diag["refused.chunk_wrong_space"] == 1
    # nothing bad was ever commanded: the arm never left home
    np.testing.assert_allclose(rig.positions(), np.tile(spec.home_vector(), (len(rig.outputs), 1)))


def test_out_of_limit_targets_are_clamped_and_counted(spec: RobotSpec) -> None:
    rig = Rig(spec)
    beyond = np.tile(spec.limits_array("upper") + 0.5, (60, 1)).astype(np.float32)
    assert rig.pipe.offer_chunk(Chunk(rig.now, beyond, spec.action_dt), rig.now).accepted
    rig.run(2.0)
    assert rig.pipe.monitor.counters()["target_clamped"] > 10
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_limits_never_exceeded_under_random_chunks(spec: RobotSpec) -> None:
    """Property-style (seeded): random chunks (noisy, jumping, out of limits, late, NaN),
    random arrival times, e-stops and re-enables; every command stays in the limits."""
    rng = np.random.default_rng(99)
    cfg = PipelineConfig(
        timeline=TimelineConfig(blend=str(rng.choice(["crossfade", "frozen_prefix"]))),
        smoothing=SmoothingConfig(),
        safety=SafetyConfig(chunk_timeout_s=0.5),
    )
    pipe = CommandPipeline(spec, cfg)
    lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
    now, stamp = 0.0, 0.0
    measured = spec.home_vector()
    positions = []
    for tick in range(4000):
        now += pipe.dt
        if rng.random() < 0.03:
            stamp = max(stamp + 1e-3, now - rng.uniform(0.0, 0.5))
            horizon = int(rng.integers(1, 60))
            base = rng.uniform(lo - 0.2, hi + 0.2)
            acts = base + np.cumsum(rng.normal(scale=0.1, size=(horizon, spec.action_dim)), 0)
            if rng.random() < 0.1:
                acts[rng.integers(horizon)] = np.nan
            pipe.offer_chunk(Chunk(stamp, acts.astype(np.float32), spec.action_dt), now)
        if tick % 1000 == 500:
            pipe.estop(now)
        if tick % 1000 == 700:
            pipe.reenable(now)
        out = pipe.step(now, measured)
        assert out is not None
        positions.append(out.positions)
        measured = out.positions + rng.normal(scale=1e-3, size=spec.action_dim)
    positions = np.array(positions)
    assert_within_limits(spec, np.vstack([spec.home_vector(), positions]), pipe.dt)
    assert np.ptp(positions, axis=0).max() > 0.5  # it really moved
    assert pipe.timeline.counters()["accepted"] > 50


def test_holds_when_plan_runs_out(spec: RobotSpec) -> None:
    rig = Rig(spec)
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=10), rig.now)
    out = rig.run(1.0)
    assert out[-1].state is PipelineState.HOLDING and out[-1].idle
    assert out[-1].reason == "no_plan"
    assert np.all(out[-1].velocities == 0.0)
    assert not out[2].idle
    # the watchdog's hold is idling too (waiting for a plan), a latched stop is not
    out = rig.run(1.5)
    assert out[-1].reason == WATCHDOG_CHUNK and out[-1].idle
    rig.pipe.estop(rig.now)
    assert not rig.run(0.1)[-1].idle


def test_command_guard_latches_and_holds_instead_of_sending(spec: RobotSpec,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    rig = Rig(spec)
    rig.pipe.offer_chunk(rig.sweep_chunk(), rig.now)
    rig.run(0.3)
    last = rig.outputs[-1].positions.copy()
    broken = lambda target, dt=None: np.full(spec.action_dim, np.nan)  # noqa: E731
    monkeypatch.setattr(rig.pipe.enforcer, "step", broken)  # a broken limiter
    out = rig.run(0.1)
    np.testing.assert_array_equal(out[0].positions, last)
    assert out[0].state is PipelineState.STOPPED and out[0].reason == "command_guard"
    assert rig.pipe.monitor.latched == "command_guard"
    assert all(np.all(np.isfinite(o.positions)) for o in out)
    assert sum("refused (command_guard)" in m for m in rig.logs) == 1


def test_async_stream_tracks_reference_without_idling(spec: RobotSpec) -> None:
    """Chunks from a noisy smooth reference arrive every 0.4 s with 0.25 s latency (the
    policy's view of the world); the commanded motion stays on the reference, never idles,
    and stays within limits."""
    rng = np.random.default_rng(11)
    rig = Rig(spec)
    arm = ~spec.gripper_mask()
    home = spec.home_vector()

    def reference(t: np.ndarray) -> np.ndarray:
        return home + 0.3 * np.sin(0.8 * t)[:, None] * arm

    latency, period, horizon = 0.25, 0.4, 48
    next_obs = 0.0
    pending: list[tuple[float, Chunk]] = []
    errors, idle = [], []
    for _ in range(round(8.0 / rig.pipe.dt)):
        if rig.now >= next_obs - 1e-9:
            times = rig.now + spec.action_dt * np.arange(horizon)
            acts = reference(times) + rng.normal(scale=0.005, size=(horizon, spec.action_dim))
            pending.append((rig.now + latency, Chunk(rig.now, acts.astype(np.float32),
                                                     spec.action_dt)))
            next_obs += period
        while pending and pending[0][0] <= rig.now + 1e-9:
            assert rig.pipe.offer_chunk(pending.pop(0)[1], rig.now).accepted
        out = rig.run(rig.pipe.dt)[0]
        if rig.now > 1.0:  # after the start-up catch-up
            errors.append(np.abs(out.positions - reference(np.array([rig.now]))[0]).max())
            idle.append(out.idle)
    assert max(errors) < 0.02
    assert not any(idle)
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)


def test_reenable_does_not_resume_the_old_plan(spec: RobotSpec) -> None:
    """After a stop the old plan is gone: re-enabling alone must not move the arm, even though
    the interrupted chunk still had seconds to run."""
    rig = Rig(spec)
    assert rig.pipe.offer_chunk(rig.sweep_chunk(horizon=120), rig.now).accepted  # 4 s
    rig.run(0.3)
    rig.pipe.estop(rig.now)
    held = rig.run(0.5)[-1].positions.copy()
    assert rig.pipe.reenable(rig.now)
    for o in rig.run(0.5):
        np.testing.assert_array_equal(o.positions, held)
        assert o.state is PipelineState.HOLDING and o.reason == "no_plan"


def test_early_command_on_a_new_plan_respects_limits_over_its_own_interval(spec: RobotSpec
                                                                        ) -> None:
    """A chunk arriving between ticks is acted on at once (an early command limited over the
    time actually elapsed); commands are never closer than the minimum command interval,
    and velocity and acceleration hold over the real intervals."""
    rng = np.random.default_rng(5)
    rig = Rig(spec)
    dt = rig.pipe.dt
    gap = rig.pipe.config.limits.min_command_interval_s
    assert 0.0 < gap < 0.5 * dt
    times, positions = [rig.now], [rig.outputs[0].positions]
    assert rig.pipe.early_step_wait(rig.now + 0.4 * gap) == pytest.approx(0.6 * gap)
    assert CommandPipeline(spec).early_step_wait(rig.now) is None  # nothing commanded yet
    with pytest.raises(ValueError, match="below the control period"):  # never a tick's gap
        CommandPipeline(spec, PipelineConfig(limits=LimitsConfig(min_command_interval_s=dt)))
    assert rig.pipe.step(rig.now + 0.4 * gap, rig.measured) is None  # too soon after the last
    early = waited = 0
    for k in range(150):
        if k % 7 == 3:  # a plan arrives between two ticks, the tick period restarts there
            # (a third of them sooner than the minimum interval after the last command)
            now = rig.now + (float(rng.uniform(0.0, gap)) if k % 3 == 0 else
                             float(rng.uniform(gap, dt)))
            rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=0.6 * float(rng.uniform(-1, 1)),
                                                 stamp=now), now)
            due = rig.pipe.early_step_wait(now) == 0.0
            assert due == (now - rig.now >= gap)
            out = rig.pipe.step(now, rig.measured, early=True)
            assert (out is not None) == due
            if out is None:  # too soon: the plan's first command waits for the interval
                wait = rig.pipe.early_step_wait(now)
                assert wait is not None and abs(now + wait - (rig.now + gap)) < 1e-12
                assert rig.pipe.step(now + 0.5 * wait, rig.measured, early=True) is None
                now += wait
                waited += 1
                out = rig.pipe.step(now, rig.measured, early=True)
                assert out is not None
            early += 1
        else:
            now = rig.now + dt
            out = rig.pipe.step(now, rig.measured)
            assert out is not None
        rig.now, rig.measured = now, out.positions
        times.append(now)
        positions.append(out.positions)
    assert early > 5 and waited > 0
    t, p = np.array(times), np.array(positions)
    lo, hi = spec.limits_array("lower"), spec.limits_array("upper")
    vmax, amax = spec.limits_array("velocity"), spec.limits_array("acceleration")
    assert np.all(p >= lo - 1e-9) and np.all(p <= hi + 1e-9)
    intervals = np.diff(t)
    assert intervals.min() >= gap - 1e-12
    v = np.diff(p, axis=0) / intervals[:, None]
    assert np.all(np.abs(v) <= vmax * (1 + 1e-9) + 1e-9)
    acc = np.diff(v, axis=0) / intervals[1:, None]
    assert np.all(np.abs(acc) <= amax * (1 + 1e-6) + 1e-6)
    assert np.ptp(p, axis=0).max() > 0.1  # it did move


def test_idle_fraction_counts_holding_time_after_the_first_plan(spec: RobotSpec) -> None:
    rig = Rig(spec)
    rig.run(1.0)  # before any plan: start-up, not charged
    assert rig.pipe.diagnostics(rig.now)["observed_s"] == 0.0
    rig.pipe.offer_chunk(rig.sweep_chunk(horizon=30), rig.now)  # 1 s of plan
    rig.run(2.0)  # then 1 s holding for lack of plan
    d = rig.pipe.diagnostics(rig.now)
    assert d["observed_s"] == pytest.approx(2.0, abs=2 * rig.pipe.dt)
    assert d["idle_fraction"] == pytest.approx(0.5, abs=0.05)


def test_go_home_moves_smoothly_home_and_feeds_the_watchdog(spec: RobotSpec) -> None:
    """Between episodes (policy paused): a move home longer than the chunk watchdog, within
    limits, that ends at rest at the home pose."""
    rig = Rig(spec, chunk_timeout_s=0.5)
    rig.pipe.offer_chunk(rig.sweep_chunk(amplitude=0.8), rig.now)
    rig.run(1.2)
    start = rig.measured.copy()
    assert np.abs(start - spec.home_vector()).max() > 0.3
    duration = rig.pipe.go_home(rig.now)
    assert duration > 0.5  # longer than the watchdog: it must not cut the move
    out = rig.run(duration + 0.3)
    assert all(o.reason == "" for o in out[: round(duration / rig.pipe.dt) - 1])
    np.testing.assert_allclose(rig.measured, spec.home_vector(), atol=1e-6)
    assert_within_limits(spec, rig.positions(), rig.pipe.dt)
    rig.pipe.estop(rig.now)
    rig.run(0.5)
    with pytest.raises(RuntimeError, match="re-enable"):
        rig.pipe.go_home(rig.now)


def test_preview_is_what_the_next_ticks_send_and_changes_nothing(spec: RobotSpec) -> None:
    rig = Rig(spec)
    rig.pipe.offer_chunk(rig.sweep_chunk(), rig.now)
    rig.run(0.3)
    ahead = rig.pipe.preview(rig.now, 5)
    assert ahead.shape == (5, spec.action_dim)
    again = rig.pipe.preview(rig.now, 5)  # no state was changed by the first preview
    np.testing.assert_array_equal(ahead, again)
    sent = rig.run(5 * rig.pipe.dt)
    np.testing.assert_allclose(np.array([o.positions for o in sent]), ahead, atol=1e-12)
    # within the limits, continuing the commands already sent
    assert_within_limits(spec, np.vstack([rig.positions()[:-5], ahead]), rig.pipe.dt)
    # it ends with the plan, and a hold is not extrapolated
    end = rig.pipe.timeline.end_time
    assert end is not None
    near_end = rig.pipe.preview(end - 2.5 * rig.pipe.dt, 10)
    assert len(near_end) == 2
    rig.run(end - rig.now + 0.1)
    assert rig.pipe.state is PipelineState.HOLDING
    assert rig.pipe.preview(rig.now, 5).shape == (0, spec.action_dim)
    rig.pipe.estop(rig.now)
    rig.run(0.1)
    assert rig.pipe.preview(rig.now, 5).shape == (0, spec.action_dim)
