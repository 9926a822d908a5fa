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
from wam_ros.sim.rollout import policy_rollout


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
