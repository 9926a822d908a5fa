"""`wam-ros bench pipeline` runs end to end and writes the keys the issue asks for (short run,
tiny model; the figures themselves are reported from a full run, never asserted)."""

from __future__ import annotations

import json
import math

import pytest

from wam_ros.cli import main

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_pipeline_bench_writes_its_json(ros_domain, tmp_path):
    out = tmp_path / "pipeline.json"
    assert main(["bench", "pipeline", "--robot", "cobot_magic", "--config", "tiny",
                 "--backend", "torch", "--schedulers", "async,sai", "--duration", "3",
                 "--policy-param", "sai_s_mid=0.5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["policy_params"] == {"sai_s_mid": 0.5}
    for key in ("p50", "p99"):
        assert math.isfinite(data["stack_overhead_ms"][key])
        assert data["model_ms"][key] > 0
    for s in ("async", "sai"):
        assert math.isfinite(data["blocking_latency_ms"][s]["p50"])
        assert 0.0 <= data["idle_fraction"][s] <= 1.0
        assert data["per_scheduler"][s]["chunks"] > 0
        # commands never step further than a control period's velocity limit allows
        # stamps are float64 seconds since the epoch: 0.24 us resolution, 1.2e-5 of a 20 ms
        # period (the smoother limits over the same rounded times)
        assert data["chunk_boundary_max_jump_ratio"][s] <= 1.0 + 1e-4


@pytest.mark.parametrize("param", ["sai_s_mid", "no_such_parameter=1"])
def test_a_bad_policy_parameter_is_refused_before_anything_starts(tmp_path, capsys, param):
    out = tmp_path / "pipeline.json"
    assert main(["bench", "pipeline", "--policy-param", param, "--json", str(out)]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().out
    assert not out.exists()
