"""sync | async | sai schedulers: decisions, statistics, registry, and fake-clock simulations
against a real ActionTimeline. Also checks that core/ and runtime/ import without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.types import Chunk
from wam_ros.runtime.scheduler import (
    SCHEDULERS,
    AsyncScheduler,
    Decision,
    SchedulerConfig,
    SpeculativeScheduler,
    SyncScheduler,
    make_scheduler,
    simulate,
)

ACTION_DT = 1 / 30
HORIZON = 48  # 1.6 s chunks


def run(name: str, latency: float, **cfg: float) -> dict:
    scheduler = make_scheduler(name, SchedulerConfig(**cfg))  # type: ignore[arg-type]
    result = simulate(scheduler, latency_s=latency, horizon=HORIZON, action_dt=ACTION_DT,
                      control_dt=0.01, observation_dt=1 / 30, duration_s=30.0)
    return {**result.stats, "max_jump": result.max_boundary_jump, "rejected": result.rejected}


# ---- registry and config -----------------------------------------------------------------
def test_registry_names_and_unknown_lists_choices() -> None:
    assert set(SCHEDULERS) == {"sync", "async", "sai"}
    assert isinstance(make_scheduler("sync"), SyncScheduler)
    assert isinstance(make_scheduler("async"), AsyncScheduler)
    assert isinstance(make_scheduler("sai"), SpeculativeScheduler)
    with pytest.raises(ValueError, match="unknown scheduler 'rtc'; allowed: sync, async, sai"):
        make_scheduler("rtc")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"margin_s": -0.1}, "margin_s"), ({"execute_actions": -1}, "execute_actions"),
     ({"speculative_fraction": 1.0}, "speculative_fraction")],
)
def test_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SchedulerConfig.{field}: got .*allowed"):
        SchedulerConfig(**kwargs)


# ---- decisions ---------------------------------------------------------------------------
def test_sync_waits_for_executed_plan_and_settled_arm() -> None:
    s = SyncScheduler()
    kw = {"expected_latency": 0.3}
    assert s.decide(0.0, remaining=0.0, in_flight=False, **kw) is Decision.START
    assert s.decide(0.0, remaining=0.01, in_flight=False, **kw) is Decision.WAIT
    assert s.decide(0.0, remaining=0.0, in_flight=True, **kw) is Decision.WAIT
    assert s.decide(0.0, remaining=0.0, in_flight=False, arm_settled=False,
                    **kw) is Decision.WAIT


def test_sync_prepare_truncates_and_retimes() -> None:
    s = SyncScheduler(SchedulerConfig(execute_actions=8))
    c = Chunk(stamp=10.0, actions=np.zeros((48, 3), np.float32), dt=ACTION_DT)
    out = s.prepare_chunk(c, now=10.4)
    assert out.horizon == 8 and out.stamp == 10.0
    assert out.times()[0] == pytest.approx(10.4)  # none of it is dropped as stale
    assert SyncScheduler().prepare_chunk(c, now=10.4).horizon == 48
    assert AsyncScheduler().prepare_chunk(c, now=10.4) is c


def test_async_triggers_at_latency_plus_margin() -> None:
    s = AsyncScheduler(SchedulerConfig(margin_s=0.05))
    kw = {"expected_latency": 0.3, "in_flight": False}
    assert s.decide(0.0, remaining=0.36, **kw) is Decision.WAIT
    assert s.decide(0.0, remaining=0.35, **kw) is Decision.START
    assert s.decide(0.0, remaining=0.1, expected_latency=0.3, in_flight=True) is Decision.WAIT


def test_async_starts_early_on_a_fresh_observation() -> None:
    """Less than a camera period before the trigger, an arriving observation starts the plan
    at once; one that arrived before the last decision does not."""
    s = AsyncScheduler(SchedulerConfig(margin_s=0.05))
    kw = {"expected_latency": 0.3, "in_flight": False}
    s.on_observation(0.0)
    # one observation so far: no period known, the plain trigger
    assert s.decide(0.0, remaining=0.36, **kw) is Decision.WAIT
    for k in range(1, 4):
        s.on_observation(k / 30)
    assert s.observation_period == pytest.approx(1 / 30)
    assert s.decide(0.1, remaining=0.38, **kw) is Decision.START  # 0.38 <= 0.35 + 1/30
    # the same observation at the next tick is no longer fresh: wait for the trigger
    assert s.decide(0.11, remaining=0.37, **kw) is Decision.WAIT
    s.on_observation(0.133)
    assert s.decide(0.133, remaining=0.39, **kw) is Decision.WAIT  # beyond a period ahead
    assert s.decide(0.2, remaining=0.35, **kw) is Decision.START  # the plain trigger
    slow = AsyncScheduler(SchedulerConfig(margin_s=0.05))
    for k in range(3):  # a 2 Hz camera: at most max_early_s ahead of the trigger
        slow.on_observation(0.5 * k)
    assert slow.decide(1.0, remaining=0.35 + slow.max_early_s + 0.01, **kw) is Decision.WAIT


def test_sai_phases() -> None:
    s = SpeculativeScheduler(SchedulerConfig(margin_s=0.05, speculative_fraction=0.5))
    kw = {"expected_latency": 0.4}
    # first chunk: nothing to speculate from
    assert s.decide(0.0, remaining=0.0, in_flight=False, **kw) is Decision.START
    s.on_inference_started(0.0, Decision.START, observation_arrival=0.0)
    assert s.decide(0.1, remaining=0.0, in_flight=True, **kw) is Decision.WAIT
    s.on_chunk_ready(0.4)
    s.on_spliced(0.4)
    # right after the splice: speculate, with no observation
    assert s.decide(0.4, remaining=1.6, in_flight=False, **kw) is Decision.SPECULATE
    s.on_inference_started(0.4, Decision.SPECULATE, None)
    assert s.decide(0.5, remaining=1.5, in_flight=True, **kw) is Decision.WAIT
    s.on_speculation_ready(0.6)
    # too early to complete (remaining > 0.2 + 0.05), even with fresh observations
    s.on_observation(0.61)
    assert s.decide(0.61, remaining=1.4, in_flight=False, **kw) is Decision.WAIT
    # trigger holds, but the newest observation predates it: wait for the next one
    assert s.decide(1.8, remaining=0.24, in_flight=False, **kw) is Decision.WAIT
    assert s.decide(1.81, remaining=0.23, in_flight=False, **kw) is Decision.WAIT
    s.on_observation(1.82)
    assert s.decide(1.82, remaining=0.22, in_flight=False, **kw) is Decision.COMPLETE
    s.on_inference_started(1.82, Decision.COMPLETE, observation_arrival=1.82)
    s.on_chunk_ready(2.02)
    assert s.blocking_latencies[-1] == pytest.approx(0.2)
    with pytest.raises(RuntimeError, match="phase"):
        s.on_speculation_ready(2.1)


def test_sai_speculates_once_the_chunk_is_handed_off() -> None:
    """The speculation waits for the chunk to reach the arm (reported applied), or for the
    hand-off allowance when no report comes: it would compete with the hand-off for the CPU."""
    s = SpeculativeScheduler(SchedulerConfig(margin_s=0.05, speculative_fraction=0.5))
    kw = {"expected_latency": 0.1, "in_flight": False, "remaining": 1.0}
    s.on_inference_started(0.0, Decision.START, observation_arrival=0.0)
    s.on_chunk_ready(0.1)
    s.on_spliced(0.1)
    assert s.decide(0.1, handoff=0.02, **kw) is Decision.WAIT
    assert s.decide(0.11, handoff=0.02, **kw) is Decision.WAIT
    s.on_chunk_applied(0.112)
    assert s.decide(0.112, handoff=0.02, **kw) is Decision.SPECULATE
    s.on_inference_started(0.112, Decision.SPECULATE, None)
    s.on_speculation_ready(0.15)
    s.on_observation(0.3)
    assert s.decide(0.3, handoff=0.02, **{**kw, "remaining": 0.1}) is Decision.WAIT  # arms
    s.on_observation(0.33)
    assert s.decide(0.33, handoff=0.02, **{**kw, "remaining": 0.07}) is Decision.COMPLETE
    s.on_inference_started(0.33, Decision.COMPLETE, observation_arrival=0.33)
    s.on_chunk_ready(0.38)
    # no report: the allowance since the chunk was ready stands in for it
    assert s.decide(0.39, handoff=0.02, **kw) is Decision.WAIT
    assert s.decide(0.40, handoff=0.02, **kw) is Decision.SPECULATE


def test_stats_blocking_latency_and_idle_fraction() -> None:
    s = AsyncScheduler()
    s.on_tick(0.0, idle=True)  # before the first chunk: start-up, not charged
    s.on_inference_started(0.0, Decision.START, observation_arrival=-0.02)
    s.on_chunk_ready(0.3)
    s.on_spliced(0.3)
    for k in range(1, 11):  # 1 s after the first chunk, idle during the last 0.25 s
        s.on_tick(0.3 + 0.1 * k, idle=k > 7)
    stats = s.stats()
    assert stats["blocking_latency_ms.p50"] == pytest.approx(320.0)
    assert stats["idle_fraction"] == pytest.approx(0.3)
    assert stats["observed_s"] == pytest.approx(1.0)
    assert stats["scheduler"] == "async" and stats["chunks"] == 1
    with pytest.raises(ValueError, match="WAIT"):
        s.on_inference_started(1.0, Decision.WAIT, None)
    s.reset_stats()
    assert s.stats()["chunks"] == 0 and s.idle_fraction == 0.0


# ---- simulations -------------------------------------------------------------------------
@pytest.mark.parametrize("latency", [0.2, 0.5])
def test_sync_idles_for_the_latency_every_chunk(latency: float) -> None:
    stats = run("sync", latency)
    assert stats["rejected"] == 0
    executed = (HORIZON - 1) * ACTION_DT
    expected = latency / (executed + latency)
    assert stats["idle_fraction"] == pytest.approx(expected, rel=0.1)
    assert stats["blocking_latency_ms.p50"] >= latency * 1e3


@pytest.mark.parametrize("latency", [0.1, 0.4, 0.75])
def test_async_never_idles_below_half_a_chunk(latency: float) -> None:
    stats = run("async", latency)
    assert stats["rejected"] == 0
    assert stats["idle_fraction"] == 0.0
    assert stats["max_jump"] < 1e-6  # the new chunk always arrives before the old runs out
    # started on an observation the moment it arrives: no wait for the trigger's phase
    assert stats["blocking_latency_ms.p50"] == pytest.approx(latency * 1e3, abs=1.0)
    assert stats["blocking_latency_ms.p99"] == pytest.approx(latency * 1e3, abs=1.0)


def test_async_idles_when_the_model_is_slower_than_a_chunk() -> None:
    """The same simulation detects idling: the zero above is not an artefact."""
    slow = run("async", 1.3)  # chunk lasts 1.6 s; only its last 0.3 s is still ahead
    assert slow["idle_fraction"] > 0.5 and slow["max_jump"] > 0.1
    # slower than a whole chunk: every chunk is entirely in the past and rejected as late
    assert run("async", 2.0)["rejected"] >= 10


@pytest.mark.parametrize("latency", [0.2, 0.4, 0.7])
def test_sai_halves_blocking_latency_without_idling(latency: float) -> None:
    sai = run("sai", latency, speculative_fraction=0.5)
    assert sai["rejected"] == 0
    asy = run("async", latency)
    assert sai["idle_fraction"] == 0.0
    assert sai["blocking_latency_ms.p50"] == pytest.approx(
        0.5 * asy["blocking_latency_ms.p50"], abs=1.0)
    assert sai["blocking_latency_ms.p50"] == pytest.approx(0.5 * latency * 1e3, abs=1.0)
    assert sai["inferences"] >= 2 * sai["chunks"] - 2  # one speculation per completion
