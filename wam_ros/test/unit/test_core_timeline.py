"""ActionTimeline with a fake clock: splicing, rejection, blending, sampling, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from wam_ros.core.timeline import (
    ActionTimeline,
    Rejection,
    TimelineConfig,
    TimelineInvariantError,
)
from wam_ros.core.types import ActionSpace, Chunk

DT = 0.1  # action period of the test chunks


def chunk(stamp: float, values: np.ndarray | list[float], dim: int = 2, **kw) -> Chunk:
    """Chunk whose action k (all dims) is values[k], meant for stamp + k * DT."""
    col = np.asarray(values, dtype=np.float32)[:, None]
    return Chunk(stamp=stamp, actions=np.repeat(col, dim, axis=1), dt=DT, **kw)


def ramp(stamp: float, n: int, slope: float = 1.0, offset: float = 0.0) -> Chunk:
    """Actions on the line offset + slope * t (absolute time t), so splices can be checked
    against a known trajectory."""
    t = stamp + DT * np.arange(n)
    return chunk(stamp, offset + slope * t)


# ---- config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"blend": "mix"}, "blend"), ({"crossfade_s": -1.0}, "crossfade_s"),
     ({"drop_margin_s": -0.1}, "drop_margin_s"), ({"frozen_actions": 0}, "frozen_actions")],
)
def test_config_errors_name_field_value_and_choices(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"TimelineConfig.{field}: got .*allowed") as err:
        TimelineConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value)


def test_blend_error_lists_modes() -> None:
    with pytest.raises(ValueError, match="crossfade, frozen_prefix, replace"):
        TimelineConfig(blend="mix")


# ---- sampling ----------------------------------------------------------------------------
def test_sample_interpolates_linearly_and_holds_the_ends() -> None:
    tl = ActionTimeline(2)
    assert tl.sample(0.0) is None and tl.remaining(0.0) == 0.0 and tl.empty
    assert tl.splice(chunk(1.0, [0.0, 1.0, 3.0]), now=1.0).accepted
    np.testing.assert_allclose(tl.sample(1.0), [0.0, 0.0])
    np.testing.assert_allclose(tl.sample(1.05), [0.5, 0.5])
    np.testing.assert_allclose(tl.sample(1.15), [2.0, 2.0])
    np.testing.assert_allclose(tl.sample(5.0), [3.0, 3.0])  # hold the last action
    np.testing.assert_allclose(tl.sample(0.5), [0.0, 0.0])  # before the plan: first action
    assert tl.remaining(1.05) == pytest.approx(0.15)
    assert tl.remaining(9.0) == 0.0
    assert tl.end_time == pytest.approx(1.2)
    assert tl.last_stamp == 1.0


def test_sample_many_is_sample_at_each_time_bit_for_bit() -> None:
    tl = ActionTimeline(3)
    assert tl.sample_many([0.0, 1.0]) is None
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(7, 3)).astype(np.float32)
    tl.splice(Chunk(1.0, actions, DT), now=1.0)
    times = np.concatenate([[0.5, 1.0, 1.6, 9.0], rng.uniform(0.9, 1.8, 40)])
    many = tl.sample_many(times)
    assert many is not None and many.shape == (times.size, 3)
    for t, row in zip(times, many):
        assert row.tobytes() == tl.sample(t).tobytes()
    grid = 1.0 + DT * np.arange(7)  # linear between actions, the ends held: np.interp per dim
    for j in range(3):
        np.testing.assert_allclose(many[:, j], np.interp(times, grid, actions[:, j]),
                                   rtol=0, atol=1e-12)
    single = ActionTimeline(3)  # one action: held at every time
    single.splice(Chunk(1.0, np.ones((1, 3), np.float32), DT), now=1.0)
    np.testing.assert_array_equal(single.sample_many([0.0, 1.0, 5.0]), np.ones((3, 3)))


def test_needs_inference_triggers_on_remaining_vs_latency() -> None:
    tl = ActionTimeline(2)
    tl.splice(ramp(0.0, 11), now=0.0)  # plan until t = 1.0
    assert not tl.needs_inference(0.5, expected_latency=0.3, margin=0.1)  # 0.5 left > 0.4
    assert tl.needs_inference(0.6, expected_latency=0.3, margin=0.1)  # 0.4 left
    assert tl.needs_inference(2.0, expected_latency=0.0)


# ---- rejections --------------------------------------------------------------------------
def test_late_chunk_rejected_and_counted_plan_unchanged() -> None:
    tl = ActionTimeline(2)
    tl.splice(ramp(0.0, 20), now=0.0)
    before = tl.snapshot()
    result = tl.splice(ramp(0.5, 5), now=1.0)  # last action at 0.9 < now
    assert not result.accepted and result.reason is Rejection.LATE
    assert "before now" in result.message
    np.testing.assert_array_equal(tl.snapshot()[1], before[1])
    assert tl.counters()["rejected_late"] == 1
    assert tl.counters()["accepted"] == 1


def test_drop_margin_makes_a_barely_future_chunk_late() -> None:
    tl = ActionTimeline(2, TimelineConfig(drop_margin_s=0.25))
    # Actions at 0.0 .. 0.2 are still ahead of now = 0 but not of now + margin.
    assert tl.splice(ramp(0.0, 3), now=0.0).reason is Rejection.LATE
    result = tl.splice(ramp(0.0, 4), now=0.0)
    assert result.accepted and result.dropped == 3 and result.kept == 1


def test_out_of_order_and_duplicate_stamps_rejected() -> None:
    tl = ActionTimeline(2)
    assert tl.splice(ramp(1.0, 10), now=1.0).accepted
    older = tl.splice(ramp(0.9, 20), now=1.05)
    same = tl.splice(ramp(1.0, 20), now=1.05)
    assert older.reason is Rejection.OUT_OF_ORDER and same.reason is Rejection.OUT_OF_ORDER
    assert tl.counters()["rejected_out_of_order"] == 2
    assert tl.splice(ramp(1.01, 10), now=1.05).accepted


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunks_rejected(bad: float) -> None:
    tl = ActionTimeline(2)
    c = ramp(0.0, 5)
    c.actions[3, 1] = bad
    result = tl.splice(c, now=0.0)
    assert result.reason is Rejection.NON_FINITE and tl.empty
    assert tl.counters()["rejected_non_finite"] == 1


def test_wrong_dim_space_episode_and_empty_rejected() -> None:
    tl = ActionTimeline(3)
    assert tl.splice(ramp(0.0, 5), now=0.0).reason is Rejection.WRONG_DIM
    delta = Chunk(0.0, np.zeros((4, 3), np.float32), DT, space=ActionSpace.JOINT_DELTA)
    assert tl.splice(delta, now=0.0).reason is Rejection.WRONG_SPACE
    empty = Chunk(0.0, np.zeros((0, 3), np.float32), DT)
    assert tl.splice(empty, now=0.0).reason is Rejection.EMPTY
    tl.reset(episode_id=7)
    other = Chunk(1.0, np.zeros((4, 3), np.float32), DT, episode_id=6)
    assert tl.splice(other, now=1.0).reason is Rejection.WRONG_EPISODE
    ok = Chunk(1.0, np.zeros((4, 3), np.float32), DT, episode_id=7)
    assert tl.splice(ok, now=1.0).accepted
    counts = tl.counters()
    for reason in ("wrong_dim", "wrong_space", "empty", "wrong_episode"):
        assert counts[f"rejected_{reason}"] == 1
    assert tl.empty is False


def test_reset_forgets_stamp_order_clear_does_not() -> None:
    tl = ActionTimeline(2)
    tl.splice(ramp(5.0, 5), now=5.0)
    tl.clear()
    assert tl.empty
    assert tl.splice(ramp(4.0, 30), now=4.0).reason is Rejection.OUT_OF_ORDER
    tl.reset()
    assert tl.splice(ramp(4.0, 30), now=4.0).accepted


# ---- splicing ----------------------------------------------------------------------------
def test_past_actions_dropped_and_counted() -> None:
    tl = ActionTimeline(2, TimelineConfig(drop_margin_s=0.05))
    result = tl.splice(ramp(0.0, 20), now=0.32)  # kept: t >= 0.37 -> 0.4 .. 1.9
    assert result.accepted and result.dropped == 4 and result.kept == 16
    assert tl.counters()["dropped_actions"] == 4


def test_splice_of_consistent_chunk_keeps_trajectory_exact() -> None:
    """A new chunk on the same line as the old plan changes nothing, whatever the blend."""
    for blend in ("crossfade", "frozen_prefix", "replace"):
        tl = ActionTimeline(2, TimelineConfig(blend=blend))
        tl.splice(ramp(0.0, 10), now=0.0)
        tl.splice(ramp(0.53, 10), now=0.61)
        for t in np.linspace(0.61, 1.43, 50):
            np.testing.assert_allclose(tl.sample(t), [t, t], atol=1e-5)


def test_no_jump_at_splice_moment_and_crossfade_endpoints() -> None:
    """Old plan: 0 everywhere. New chunk: 1 everywhere. Crossfade over 0.3 s."""
    cfg = TimelineConfig(blend="crossfade", crossfade_s=0.3, drop_margin_s=0.05)
    tl = ActionTimeline(2, cfg)
    tl.splice(chunk(0.0, np.zeros(30)), now=0.0)
    now = 1.02
    result = tl.splice(chunk(0.9, np.ones(30)), now=now)
    assert result.accepted and result.boundary_jump == pytest.approx(1.0)
    # At the splice moment and until the first kept action (1.1), still the old plan.
    np.testing.assert_allclose(tl.sample(now), [0.0, 0.0])
    np.testing.assert_allclose(tl.sample(1.1), [0.0, 0.0])
    # Fully the new chunk once the crossfade has run (1.1 + 0.3).
    np.testing.assert_allclose(tl.sample(1.4), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(tl.sample(2.5), [1.0, 1.0], atol=1e-6)
    # Monotone and strictly between in the window.
    mid = np.array([tl.sample(t)[0] for t in np.linspace(1.1, 1.4, 31)])
    assert np.all(np.diff(mid) >= -1e-9) and 0.0 < mid[15] < 1.0


def test_boundary_blend_bounds_the_step_per_control_period() -> None:
    """A 0.5 rad disagreement between plans is spread over the crossfade: the largest change
    between control ticks is about 1.5 * 0.5 * dt / crossfade (smoothstep's peak slope) plus
    the trajectories' own motion; `replace` jumps the whole 0.5 (so the check can fail)."""
    control_dt = 0.01

    def max_step(blend: str) -> float:
        tl = ActionTimeline(2, TimelineConfig(blend=blend, crossfade_s=0.4))
        tl.splice(ramp(0.0, 30, slope=0.2), now=0.0)
        tl.splice(ramp(1.0, 30, slope=0.2, offset=0.5), now=1.03)
        x = np.array([tl.sample(t)[0] for t in np.arange(0.9, 3.0, control_dt)])
        return float(np.max(np.abs(np.diff(x))))

    bound = 1.5 * 0.5 * control_dt / 0.4 + 0.2 * control_dt
    assert max_step("crossfade") <= bound * 1.05
    assert max_step("frozen_prefix") <= bound * 1.05
    # replace: the 0.5 disagreement is only spread over the gap to the first kept action.
    assert max_step("replace") > 3 * bound


def test_crossfade_ends_with_an_old_plan_that_runs_out() -> None:
    """Old plan x = t ends at 1.2; the crossfade (1 s) must not drag the new chunk toward the
    old plan's final pose after 1.2."""
    tl = ActionTimeline(2, TimelineConfig(crossfade_s=1.0))
    tl.splice(ramp(0.0, 13), now=0.0)
    tl.splice(ramp(1.0, 20, offset=0.1), now=1.0)  # new: x = t + 0.1
    np.testing.assert_allclose(tl.sample(1.0), [1.0, 1.0], atol=1e-6)
    for t in (1.2, 1.5, 2.0):
        np.testing.assert_allclose(tl.sample(t), [t + 0.1, t + 0.1], atol=1e-5)
    assert 1.1 < tl.sample(1.1)[0] < 1.2


def test_frozen_prefix_keeps_old_plan_for_first_actions() -> None:
    cfg = TimelineConfig(blend="frozen_prefix", frozen_actions=3, crossfade_s=0.0)
    tl = ActionTimeline(2, cfg)
    tl.splice(ramp(0.0, 30), now=0.0)  # old: x = t
    tl.splice(ramp(1.0, 10, offset=1.0), now=1.0)  # new: x = t + 1
    for k, t in enumerate(1.0 + DT * np.arange(10)):
        expected = t if k < 3 else t + 1.0
        np.testing.assert_allclose(tl.sample(t), [expected, expected], atol=1e-5)


def test_frozen_prefix_longer_than_chunk_keeps_old_plan() -> None:
    cfg = TimelineConfig(blend="frozen_prefix", frozen_actions=50)
    tl = ActionTimeline(2, cfg)
    tl.splice(ramp(0.0, 30), now=0.0)
    tl.splice(ramp(1.0, 5, offset=3.0), now=1.0)
    np.testing.assert_allclose(tl.sample(1.2), [1.2, 1.2], atol=1e-5)


def test_hold_position_blends_first_chunk_from_rest() -> None:
    tl = ActionTimeline(2, TimelineConfig(crossfade_s=0.5))
    hold = np.array([0.3, -0.3])
    tl.splice(chunk(0.0, np.ones(20)), now=0.05, hold_position=hold)
    np.testing.assert_allclose(tl.sample(0.05), hold)
    np.testing.assert_allclose(tl.sample(0.1), hold)  # first kept action: still the hold
    np.testing.assert_allclose(tl.sample(0.6), [1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="hold_position"):
        ActionTimeline(2).splice(chunk(0.0, np.ones(3)), now=0.0, hold_position=np.zeros(3))


def test_random_splices_keep_invariants_and_continuity() -> None:
    """Property-style: random stamps, latencies, offsets; times stay strictly increasing,
    sampling never jumps at a splice, and rejected chunks never change the plan."""
    rng = np.random.default_rng(1234)
    tl = ActionTimeline(3, TimelineConfig(crossfade_s=0.2, drop_margin_s=0.02))
    now, stamp = 0.0, 0.0
    for _ in range(300):
        now += rng.uniform(0.0, 0.3)
        stamp = max(stamp + 1e-3, now - rng.uniform(0.0, 0.6))
        horizon = int(rng.integers(1, 25))
        acts = rng.normal(size=(horizon, 3)).astype(np.float32)
        before = tl.sample(now)
        snap = tl.snapshot()
        result = tl.splice(Chunk(stamp, acts, DT), now=now)
        times, _ = tl.snapshot()
        assert np.all(np.diff(times) > 0)
        after = tl.sample(now)
        if result.accepted and before is not None:
            np.testing.assert_allclose(after, before, atol=1e-9)
        if not result.accepted:
            np.testing.assert_array_equal(tl.snapshot()[1], snap[1])
    assert tl.counters()["accepted"] > 100


def test_invariant_check_catches_corruption() -> None:
    tl = ActionTimeline(2)
    tl.splice(ramp(0.0, 5), now=0.0)
    tl._times[2] = tl._times[1]  # simulate a bug
    with pytest.raises(TimelineInvariantError, match="strictly increasing"):
        tl._check_invariants()


def test_concurrent_splice_and_sample() -> None:
    """The policy thread splices while the control thread samples; no torn reads (a sample
    is always on one of the two constant plans' values or between them)."""
    tl = ActionTimeline(4, TimelineConfig(crossfade_s=0.0, blend="replace"))
    errors: list[BaseException] = []
    stop = threading.Event()

    def sampler() -> None:
        try:
            while not stop.is_set():
                x = tl.sample(1.0e6)
                if x is not None:
                    assert np.all(x == x[0])  # all dims from one consistent plan
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sampler)
    thread.start()
    for k in range(2000):
        value = float(k % 7)
        tl.splice(Chunk(float(k), np.full((5, 4), value, np.float32), DT), now=float(k))
    stop.set()
    thread.join()
    assert not errors
    assert tl.counters()["accepted"] == 2000
