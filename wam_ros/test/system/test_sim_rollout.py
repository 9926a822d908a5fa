"""A checkpoint in closed loop on the simulator without ROS (`wam-ros sim rollout`): the loop
renders at the model's size, executes decoded chunks through the mock controllers, stops on
success or time-out and reports the task's phase."""

from __future__ import annotations

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from wam_ros.cli import main
from wam_ros.core.decoding import ChunkDecoder
from wam_ros.runtime import load_policy
from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.rollout import policy_rollout, stack_rollout


def test_rollout_executes_decoded_chunks_until_the_timeout(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint("cobot_magic"))
    commands = []
    with Simulator("cobot_magic", "pick_place") as sim:
        spec = sim.robot
        result = policy_rollout(sim, policy, seed=5, execute=4, timeout=1.0,
                                on_step=lambda s, q: commands.append(q))
        assert sim.seed == 5
    assert not result.success and result.seconds == pytest.approx(1.0, abs=spec.action_dt)
    assert result.phase == "approach"
    assert result.chunks == pytest.approx(1.0 / (4 * spec.action_dt), abs=1)
    q = np.array(commands)
    assert q.shape == (round(1.0 / spec.action_dt), spec.action_dim)
    assert np.all(q >= spec.limits_array("lower") - 1e-6)
    assert np.all(q <= spec.limits_array("upper") + 1e-6)
    with pytest.raises(ValueError, match="execute"):
        policy_rollout(None, policy, seed=0, execute=0)
    with pytest.raises(ValueError, match="delay"):
        policy_rollout(None, policy, seed=0, execute=4, delay=4)


def test_rollout_with_latency_runs_the_previous_chunk_meanwhile(tiny_checkpoint):
    """delay=2: after each observation the arm goes on with the previous chunk's next two
    actions; the new chunk takes over at its third."""
    policy = load_policy(tiny_checkpoint("cobot_magic"))
    commands, chunks = [], []
    infer = policy.infer
    policy.infer = lambda obs: chunks.append(infer(obs)) or chunks[-1]
    with Simulator("cobot_magic", "pick_place") as sim:
        policy_rollout(sim, policy, seed=5, execute=4, timeout=0.5, delay=2,
                       on_step=lambda s, q: commands.append(np.array(q)))
        spec = sim.robot
    decoded = [ChunkDecoder(spec).decode(c).actions for c in chunks]
    np.testing.assert_allclose(commands[0], decoded[0][0], atol=1e-6)  # held at the start
    np.testing.assert_allclose(commands[2], decoded[0][2], atol=1e-6)
    np.testing.assert_allclose(commands[4], decoded[0][4], atol=1e-6)  # the old plan runs on
    np.testing.assert_allclose(commands[6], decoded[1][2], atol=1e-6)  # then the new one


def _stack_run(policy, scheduler: str, timeout: float = 1.0):
    commands = []
    with Simulator("cobot_magic", "pick_place") as sim:
        result = stack_rollout(sim, policy, seed=5, scheduler=scheduler, latency_s=0.1,
                               timeout=timeout,
                               on_command=lambda s, out: commands.append(
                                   (s.time, out.positions.copy())))
        return result, commands, sim.robot


def test_stack_rollout_commands_at_the_control_rate_within_limits(tiny_checkpoint):
    """Through the runtime (scheduler, decoder, smoother pipeline) on the sim's clock: a
    command per control period, starting at rest from the measured pose, every step within
    the position and velocity limits, and deterministic with a fixed simulated latency."""
    policy = load_policy(tiny_checkpoint("cobot_magic"))
    result, commands, spec = _stack_run(policy, "async")
    assert not result.success and result.phase == "approach"
    assert result.seconds == pytest.approx(1.0, abs=0.05)
    t = np.array([c[0] for c in commands])
    q = np.array([c[1] for c in commands])
    dt = 1.0 / spec.control_rate_hz
    assert len(q) == pytest.approx(1.0 / dt, abs=2)
    assert np.all(np.diff(t) > 0.5 * dt) and np.all(np.diff(t) < 1.5 * dt)
    np.testing.assert_allclose(q[0], spec.home_vector(), atol=1e-6)
    assert np.all(q >= spec.limits_array("lower") - 1e-9)
    assert np.all(q <= spec.limits_array("upper") + 1e-9)
    step = np.abs(np.diff(q, axis=0)) / np.diff(t)[:, None]
    assert np.all(step <= spec.limits_array("velocity") * 1.0001)
    assert result.chunks >= 2 and len(result.infer_ms) == result.chunks
    # a fresh policy: the flow noise is seeded per (episode, chunk) of the policy
    again, commands2, _ = _stack_run(load_policy(tiny_checkpoint("cobot_magic")), "async")
    assert again.chunks == result.chunks
    np.testing.assert_array_equal(q, np.array([c[1] for c in commands2]))


def test_stack_rollout_stops_where_asked(tiny_checkpoint):
    """`stop(status)` ends the episode at the first camera frame it holds for (recovery
    episodes stop there once a policy is past the first phase)."""
    policy = load_policy(tiny_checkpoint("cobot_magic"))
    seen = []
    with Simulator("cobot_magic", "pick_place") as sim:
        result = stack_rollout(sim, policy, seed=5, latency_s=0.05, timeout=2.0,
                               stop=lambda status: seen.append(status.elapsed) or
                               status.elapsed >= 0.5)
    assert not result.success and result.seconds == pytest.approx(0.5, abs=0.05)
    assert seen[-1] >= 0.5 and all(t < 0.5 for t in seen[:-1])


def test_stack_rollout_async_plans_more_often_than_sync(tiny_checkpoint):
    """sync waits for the plan to run out (and the latency) before the next inference; async
    starts the next one while the plan still runs."""
    policy = load_policy(tiny_checkpoint("cobot_magic"))
    sync, _, spec = _stack_run(policy, "sync", timeout=2.0)
    asyn, _, _ = _stack_run(policy, "async", timeout=2.0)
    chunk_s = policy.meta.horizon * policy.meta.dt
    assert sync.chunks <= 2.0 / (chunk_s + 0.1) + 1
    assert asyn.chunks > sync.chunks
    # sync holds the arm while it infers; async plans ahead
    assert sync.idle_fraction > 0.1 and asyn.idle_fraction < sync.idle_fraction


def test_rollout_cli_writes_the_summary(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["sim", "rollout", "--checkpoint", str(tiny_checkpoint("cobot_magic")),
                 "--episodes", "2", "--timeout", "0.5", "--json", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 0.0
    assert summary["final_phases"] == {"approach": 2}
    assert [e["seed"] for e in summary["episodes_detail"]] == [100000, 100001]
    assert "0/2 solved" in capsys.readouterr().out


def test_rollout_cli_through_the_stack(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["sim", "rollout", "--checkpoint", str(tiny_checkpoint("cobot_magic")),
                 "--episodes", "1", "--timeout", "0.5", "--stack", "sai", "--latency-ms", "80",
                 "--latency-deviations", "1.5", "--policy-param", "latency_margin_s=0.15",
                 "--policy-param", "flow_steps=2", "--json", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["stack"] == "sai" and summary["latency_ms"] == 80.0
    assert summary["flow_steps"] == 2  # a load-time parameter reaches the loaded policy
    assert summary["latency_deviations"] == 1.5 and 0.0 <= summary["idle_fraction"] <= 1.0
    assert summary["latency_margin_s"] == 0.15
    assert "execute" not in summary and summary["episodes"] == 1
    refused = [  # (arguments, what the error names)
        (["--policy-param", "latency_margin=0.1"], "--policy-param 'latency_margin=0.1'"),
        (["--policy-param", "latency_margin_s=-1"], "latency_margin_s"),
        (["--policy-param", "memory=ttt"], "--policy-param memory: set it with --memory"),
        (["--noise-scale", "0.2", "--policy-param", "noise_scale=0.5"], "disagree"),
        (["--latency-ms", "0"], "--latency-ms"),
        (["--latency-ms", "80", "--latency-p99-ms", "50"],
         "--latency-p99-ms: got 50.0; allowed: >= --latency-ms"),
        (["--handoff-ms", "-1"], "--handoff-ms"),
    ]
    for extra, message in refused:
        assert main(["sim", "rollout", "--checkpoint", str(tiny_checkpoint("cobot_magic")),
                     "--stack", "async", *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_simulated_stack_hands_chunks_over_late_and_the_runner_learns_it(tiny_checkpoint):
    """handoff_s: a finished chunk reaches the pipeline that much later and the runner learns
    the hand-off from the splice reports, as the policy node does from the smoother's;
    latency_p99_s draws each inference's latency (seeded: a run repeats exactly)."""
    from wam_ros.core.robot import RobotSpec
    from wam_ros.core.types import Observation
    from wam_ros.runtime.stack import SimulatedStack

    spec = RobotSpec.load("cobot_magic")

    def run(seed: int) -> tuple[SimulatedStack, list[tuple[float, float]]]:
        policy = load_policy(tiny_checkpoint("cobot_magic"))
        stack = SimulatedStack(policy, spec, latency_s=0.05, latency_p99_s=0.15, seed=seed,
                               handoff_s=0.04)
        applied: list[tuple[float, float]] = []
        report = stack.runner.on_chunk_applied
        stack.runner.on_chunk_applied = lambda s, t: applied.append((s, t)) or report(s, t)
        h, w = policy.meta.image_size
        images = {c: np.zeros((h, w, 3), np.uint8) for c in policy.meta.camera_names}
        q = spec.home_vector()
        stack.start(0.0)
        for k in range(60):
            t = k / 30
            stack.advance(t, measure=lambda now: q)
            stack.observe(Observation(t, images, q), t)
        return stack, applied

    stack, applied = run(3)
    assert len(applied) >= 5
    assert stack.runner.expected_handoff == pytest.approx(0.04, abs=1e-9)
    delays = np.array([t - s for s, t in applied])  # observation -> spliced
    assert np.all(delays >= 0.04) and np.ptp(delays) > 0.02  # latencies drawn, not fixed
    assert run(3)[1] == applied
    with pytest.raises(ValueError, match="handoff_s"):
        SimulatedStack(stack.runner.policy, spec, handoff_s=-0.1)
    with pytest.raises(ValueError, match="latency_p99_s"):
        SimulatedStack(stack.runner.policy, spec, latency_s=0.1, latency_p99_s=0.05)
