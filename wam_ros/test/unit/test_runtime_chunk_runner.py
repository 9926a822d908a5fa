"""ChunkRunner with a fake policy and a fake clock: jobs, pause / reset between episodes,
stale and out-of-order observations, failing inference."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.core.types import Chunk, Observation
from wam_ros.runtime.chunk_runner import ChunkRunner
from wam_ros.runtime.scheduler import Decision, SchedulerConfig, make_scheduler

DT, H, D = 1 / 30, 16, 3


class FakePolicy:
    def __init__(self) -> None:
        self.resets = 0
        self.fail = False

    def infer(self, obs: Observation) -> Chunk:
        if self.fail:
            raise RuntimeError("backend exploded")
        acts = np.tile(obs.joint_positions, (H, 1)).astype(np.float32)
        return Chunk(obs.stamp, acts, DT, reference=obs.joint_positions)

    def speculate(self, s_mid: float = 0.5, at: float | None = None) -> str:
        self.speculated_at = at
        return "handle"

    def complete(self, handle: str, obs: Observation) -> Chunk:
        return self.infer(obs)

    def reset(self) -> None:
        self.resets += 1


def obs(t: float) -> Observation:
    return Observation(t, {}, np.full(D, t))


@pytest.fixture
def runner() -> ChunkRunner:
    return ChunkRunner(FakePolicy(), make_scheduler("async", SchedulerConfig(margin_s=0.1)),
                       max_observation_age=0.2)


def test_observation_to_chunk_and_each_observation_used_once(runner: ChunkRunner) -> None:
    runner.on_observation(obs(1.0), 1.01)
    job = runner.poll(1.02)
    assert job is not None and job.kind is Decision.START and job.observation.stamp == 1.0
    assert runner.poll(1.03) is None  # one job in flight
    chunk = runner.finish(runner.execute(job), 1.05)
    assert chunk is not None and chunk.blocking_time == pytest.approx(0.04)
    assert runner.remaining(1.05) > 0.3
    assert runner.poll(1.06) is None  # plan long enough, no new observation either


def test_observations_from_the_future_refused_and_not_remembered(runner: ChunkRunner) -> None:
    assert not runner.on_observation(obs(3601.0), 1.0)
    assert not runner.on_observation(obs(float("nan")), 1.0)
    assert runner.refusals["observation_future"] == 2
    assert runner.on_observation(obs(1.0), 1.01)  # the next good one is taken
    job = runner.poll(1.02)
    assert job is not None and job.observation.stamp == 1.0


def test_stale_and_out_of_order_observations_refused(runner: ChunkRunner) -> None:
    runner.on_observation(obs(1.0), 1.0)
    runner.on_observation(obs(0.9), 1.0)
    assert runner.refusals["observation_out_of_order"] == 1
    assert runner.poll(1.5) is None  # 0.5 s old > 0.2 s
    assert runner.refusals["observation_stale"] == 1


def test_pause_drops_the_job_in_flight_and_reset_resumes(runner: ChunkRunner) -> None:
    policy = runner.policy
    runner.on_observation(obs(1.0), 1.0)
    job = runner.poll(1.0)
    assert job is not None
    runner.pause()
    runner.on_observation(obs(1.1), 1.1)
    assert runner.poll(1.1) is None  # paused: no job even with a fresh observation
    assert runner.finish(runner.execute(job), 1.2) is None  # the ended episode's result
    assert runner.refusals["result_of_previous_episode"] == 1
    runner.reset()
    assert policy.resets == 1 and not runner.paused
    runner.on_observation(obs(1.3), 1.3)
    job = runner.poll(1.3)
    assert job is not None and job.episode == runner.episode
    assert runner.finish(runner.execute(job), 1.35) is not None


def test_reset_while_a_job_runs_resets_memory_after_it(runner: ChunkRunner) -> None:
    policy = runner.policy
    runner.on_observation(obs(1.0), 1.0)
    job = runner.poll(1.0)
    runner.reset()
    assert policy.resets == 0  # never under a running inference
    assert runner.finish(runner.execute(job), 1.1) is None
    assert policy.resets == 1


def test_failed_inference_is_counted_and_retried(runner: ChunkRunner) -> None:
    runner.policy.fail = True
    runner.on_observation(obs(1.0), 1.0)
    result = runner.execute(runner.poll(1.0))
    assert "backend exploded" in result.error
    assert runner.finish(result, 1.05) is None
    assert runner.refusals["inference_failed"] == 1
    runner.policy.fail = False
    runner.on_observation(obs(1.1), 1.1)
    assert runner.poll(1.1) is not None


class PrefixPolicy(FakePolicy):
    def __init__(self) -> None:
        super().__init__()
        self.prefixes: list[float | None] = []

    def infer(self, obs: Observation, **options) -> Chunk:
        self.prefixes.append(options.get("prefix_s"))
        return super().infer(obs)


@pytest.mark.parametrize("scheduler,inpaint,expected", [
    ("async", True, 0.05 + 0.1), ("sync", True, None), ("async", False, None)])
def test_inpainting_asks_for_the_prefix_that_executes_until_arrival(scheduler, inpaint,
                                                                    expected) -> None:
    """prefix_s = observation age at the start + the expected latency, only when the arm moves
    during inference (not sync), and only when asked for."""
    policy = PrefixPolicy()
    runner = ChunkRunner(policy, make_scheduler(scheduler, SchedulerConfig(margin_s=0.1)),
                         initial_latency=0.1, inpaint=inpaint)
    runner.on_observation(obs(1.0), 1.0)
    job = runner.poll(1.05)
    assert job is not None and job.kind is Decision.START
    runner.finish(runner.execute(job), 1.1)
    assert policy.prefixes == [pytest.approx(expected) if expected else None]


def test_reset_refuses_observations_of_the_last_episode(runner: ChunkRunner) -> None:
    """After reset(now), an observation stamped before `now` (the last episode's scene, still
    in flight) is refused and counted; later ones start the episode."""
    runner.reset(5.0)
    runner.on_observation(obs(4.98), 5.01)
    assert runner.poll(5.02) is None
    assert runner.stats()["refused.observation_before_episode"] == 1
    runner.on_observation(obs(5.03), 5.04)
    job = runner.poll(5.05)
    assert job is not None and job.observation.stamp == 5.03


def test_latency_is_learned_on_the_callers_clock_and_the_handoff_from_splice_reports(
        runner: ChunkRunner) -> None:
    """L: handed out -> finished on the runner's clock (a wait for the worker included);
    H: finished -> spliced, from the smoother's reports; async plans ahead by L + H."""
    runner.expected_latency = 0.05
    runner.late_feedback = False  # these chunks follow plans that ran out: not the subject
    t = 1.0
    for _ in range(20):
        runner.on_observation(obs(t), t)
        job = runner.poll(t + 0.01)
        assert job is not None
        chunk = runner.finish(runner.execute(job), t + 0.01 + 0.08)  # 80 ms on the clock
        assert chunk is not None
        runner.on_chunk_applied(chunk.stamp + 3e-7, t + 0.09 + 0.06)  # ns round trip
        runner.on_chunk_applied(chunk.stamp, t + 0.5)  # reported twice: ignored
        t += 0.6
    assert runner.expected_latency == pytest.approx(0.08, abs=1e-3)  # not the compute time
    assert runner.expected_handoff == pytest.approx(0.06, abs=1e-6)
    assert runner.stats()["expected_handoff_ms"] == pytest.approx(60.0, abs=1e-3)
    runner.on_chunk_applied(123.0, 124.0)  # not a chunk of ours
    assert runner.expected_handoff == pytest.approx(0.06, abs=1e-6)
    # the async trigger: remaining <= L + H + margin (0.08 + 0.06 + 0.1)
    end = t - 0.6 + (H - 1) * DT  # the last plan's last action (chunks start at their stamp)
    runner.on_observation(obs(end - 0.4), end - 0.4)
    assert runner.poll(end - 0.4) is None  # fresh, but more than max_early_s ahead
    assert runner.poll(end - 0.25) is None
    assert runner.poll(end - 0.23) is not None


def test_deviation_allowance_plans_further_ahead() -> None:
    runner = ChunkRunner(FakePolicy(), make_scheduler("async", SchedulerConfig(margin_s=0.0)),
                         latency_deviations=2.0, initial_latency=0.05)
    t = 1.0
    for k in range(20):
        runner.on_observation(obs(t), t)
        job = runner.poll(t)
        assert job is not None
        latency = 0.04 if k % 2 else 0.12  # alternating: mean 0.08, deviation ~0.04
        assert runner.finish(runner.execute(job), t + latency) is not None
        t += 0.6
    assert runner.latency_dev > 0.02
    assert runner.lead_allowance() == pytest.approx(2.0 * runner.latency_dev)


@pytest.mark.parametrize("scheduler", ["async", "sai", "sync"])
def test_a_chunk_spliced_after_the_plan_ran_out_makes_the_runner_plan_further_ahead(
        scheduler: str) -> None:
    """The lateness (splice time - end of the plan before it) adds to the lead allowance;
    each chunk on time takes late_decay of it away. Sync waits for its plan to run out by
    design: nothing to learn there."""
    runner = ChunkRunner(FakePolicy(), make_scheduler(scheduler, SchedulerConfig(margin_s=0.0)),
                         initial_latency=0.05, late_decay=0.5)

    def plan(t: float, latency: float, handoff: float) -> Chunk:
        job = None
        for k in range(3):  # sai: speculate, arm on the trigger, complete on a fresh frame
            runner.on_observation(obs(t + 1e-4 * k), t)
            job = runner.poll(t)
            if job is None or job.kind is Decision.SPECULATE:
                if job is not None:
                    runner.finish(runner.execute(job), t)
                continue
            break
        assert job is not None and job.kind is not Decision.SPECULATE
        chunk = runner.finish(runner.execute(job), t + latency)
        assert chunk is not None
        runner.on_chunk_applied(chunk.stamp, t + latency + handoff)
        return chunk

    first = plan(1.0, 0.05, 0.0)  # nothing before it: not late
    assert runner.late_allowance == 0.0
    end = float(first.times()[-1])
    plan(end, 0.05, 0.01)  # spliced 60 ms after the plan ran out
    if scheduler == "sync":
        assert runner.late_allowance == 0.0 and runner.late_chunks == 0
        return
    assert runner.late_allowance == pytest.approx(0.06)
    assert runner.late_chunks == 1 and runner.stats()["late_allowance_ms"] == pytest.approx(60)
    assert runner.lead_allowance() == pytest.approx(runner.expected_handoff + 0.06)
    end = runner.remaining(0.0)  # the second plan's end
    plan(end - 0.05, 0.02, 0.01)  # spliced before that plan ran out: on time
    assert runner.late_allowance == pytest.approx(0.03)
    plan(end + 5.0, 0.02, 0.01)  # a stall of seconds: at most half a chunk
    assert runner.late_allowance == pytest.approx(0.5 * H * DT) and runner.late_chunks == 2
    runner.late_allowance = 0.03
    runner.late_feedback = False
    plan(end + 10.0, 0.02, 0.01)  # late, but the feedback is off
    assert runner.late_allowance == pytest.approx(0.03) and runner.late_chunks == 2


def test_sai_speculation_is_told_when_its_completion_observation_is_due() -> None:
    """The speculative job carries the time the completion's observation is expected: the
    plan's end minus what the completion trigger leaves ((1 - s_mid) L + lead + margin);
    the first speculation of an episode, before any plan, has none to give."""
    policy = FakePolicy()
    config = SchedulerConfig(margin_s=0.05, speculative_fraction=0.75)
    runner = ChunkRunner(policy, make_scheduler("sai", config), initial_latency=0.08)
    runner.on_observation(obs(1.0), 1.0)
    job = runner.poll(1.0)
    assert job.kind is Decision.START and job.expected_observation is None
    chunk = runner.finish(runner.execute(job), 1.0)  # no wall time on this clock
    assert chunk is not None
    job = runner.poll(1.0)
    assert job.kind is Decision.SPECULATE
    plan_end = float(chunk.times()[-1])
    lead = 0.25 * runner.expected_latency + runner.lead_allowance() + 0.05
    assert job.expected_observation == pytest.approx(plan_end - lead)
    runner.finish(runner.execute(job), 1.0)
    assert policy.speculated_at == pytest.approx(plan_end - lead)


def test_sai_speculates_after_the_newest_chunk_is_reported_applied() -> None:
    """The speculation for the next chunk waits while the last one is on its way to the arm:
    until the smoother reports it applied (a report of an older chunk does not count), or the
    hand-off allowance has passed."""
    runner = ChunkRunner(FakePolicy(), make_scheduler("sai", SchedulerConfig(margin_s=0.05)),
                         initial_latency=0.05)
    runner.on_observation(obs(1.0), 1.0)
    first = runner.finish(runner.execute(runner.poll(1.0)), 1.0)
    runner.finish(runner.execute(runner.poll(1.0)), 1.0)  # speculation: no hand-off known yet
    runner.on_chunk_applied(first.stamp, 1.05)  # hand-off learned: 50 ms
    t, second = 1.0, None
    while second is None:  # observations every 10 ms until the completion runs
        t = round(t + 0.01, 6)
        runner.on_observation(obs(t), t)
        job = runner.poll(t)
        if job is not None:
            assert job.kind is Decision.COMPLETE
            second = runner.finish(runner.execute(job), t)
    assert runner.poll(t) is None and runner.poll(t + 0.02) is None
    runner.on_chunk_applied(first.stamp, t + 0.021)  # an old chunk: ignored
    assert runner.poll(t + 0.021) is None
    runner.on_chunk_applied(second.stamp, t + 0.022)
    assert runner.poll(t + 0.022).kind is Decision.SPECULATE
