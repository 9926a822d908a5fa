"""Offline replay: a bag through the policy on a simulated clock, deterministic, compared with
the recorded actions; MCAP and sqlite3 bags; the CLI writes JSON and a plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wam_ros.cli import main as cli_main
from wam_ros.data.replay import ReplayOptions, replay
from wam_ros.data.synthetic import write_synthetic_episode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay_bags")
    return {
        "cobot_magic": write_synthetic_episode(root / "cm", "cobot_magic", 2.0,
                                               image_size=(48, 64)),
        "agibot_g1": write_synthetic_episode(root / "g1", "agibot_g1", 2.0, storage="sqlite3",
                                             image_size=(48, 64)),
    }


def test_report_keys_metrics_and_determinism(bags, tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("cobot_magic")
    quiet = {"log": lambda _m: None}
    first = replay([bags["cobot_magic"]], ckpt, ReplayOptions(scheduler="sync"),
                   json_path=tmp_path / "r.json", **quiet)
    on_disk = json.loads((tmp_path / "r.json").read_text())
    for key in ("episodes", "action_mse", "per_joint_mae", "latency_ms.p50",
                "latency_ms.p99", "horizon_mae", "boundary_mae", "speed_x"):
        assert key in on_disk, key
    (ep,) = on_disk["episodes"]
    assert ep["chunks"] >= 3 and ep["observations"] > 40 and ep["rejected_chunks"] == 0
    assert ep["action_source"] == "teleop" and ep["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert 0 < on_disk["action_mse"] < 1.0 and np.isfinite(on_disk["boundary_mae"])
    assert list(on_disk["per_joint_mae"]) == [f"{side}_joint{i}" for side in ("left", "right")
                                              for i in range(1, 8)]
    assert len(on_disk["horizon_mae"]) == 8  # tiny: chunks of 8 actions
    assert 0 < on_disk["latency_ms.p50"] <= on_disk["latency_ms.p99"]
    # same bag, checkpoint and simulated latency -> the same chunks and errors
    again = replay([bags["cobot_magic"]], ckpt, ReplayOptions(scheduler="sync"), **quiet)
    assert again["action_mse"] == first["action_mse"]
    assert again["per_joint_mae"] == first["per_joint_mae"]
    assert again["chunks"] == first["chunks"]


def test_sqlite3_bag_replays_with_the_speculative_scheduler(bags, tiny_checkpoint):
    report = replay([bags["agibot_g1"]], tiny_checkpoint("agibot_g1"),
                    ReplayOptions(scheduler="sai"), log=lambda _m: None)
    (ep,) = report["episodes"]
    assert ep["chunks"] >= 4 and np.isfinite(report["action_mse"])


def test_cli_offline_replay_and_its_errors(bags, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "replay.json"
    assert cli_main(["replay", str(bags["cobot_magic"]), "--checkpoint",
                     str(tiny_checkpoint("cobot_magic")), "--scheduler", "async",
                     "--json", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    report = json.loads(out.read_text())
    assert report["scheduler"] == "async" and report["chunks"] >= 5
    assert report["episodes"][0]["rejected_chunks"] == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert "real time" in capsys.readouterr().out
    assert cli_main(["replay", str(bags["cobot_magic"])]) == 2  # no checkpoint
    # a bag of another robot is refused with the reason
    assert cli_main(["replay", str(bags["agibot_g1"]), "--checkpoint",
                     str(tiny_checkpoint("cobot_magic"))]) == 1
    assert "recorded on agibot_g1" in capsys.readouterr().err
