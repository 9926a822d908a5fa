"""`wam-ros bench pipeline` runs end to end and writes the keys the issue asks for (short run,
tiny model; the figures themselves are reported from a full run, never asserted)."""

from __future__ import annotations

import json
import math

import pytest

from wam_ros.cli import main

pytestmark = pytest.mark.slow


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


def test_launched_graph_bench_runs_robot_size_cameras_and_writes_its_json(ros_domain,
                                                                          tmp_path):
    """--graph cameras,launched: the camera transport alone, then the launch files' processes
    against 640x480 cameras resized by the observation node; camera throughput and overhead
    in the JSON, per graph x DDS profile."""
    out = tmp_path / "launched.json"
    assert main(["bench", "pipeline", "--robot", "cobot_magic", "--config", "tiny",
                 "--backend", "torch", "--schedulers", "async", "--duration", "4",
                 "--graph", "cameras,launched", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["graph"], r["camera_size"], r["dds_profile"]) for r in data["runs"]] == [
        ("cameras", "robot", "launch"), ("launched", "robot", "launch")]
    # the floor: every camera's frames reached the bare subscriber, whole sets of three
    floor = data["runs"][0]["camera_transport"]
    assert floor["frames_per_s"] > 0 and 0 < floor["sets_per_s"] <= floor["frames_per_s"] / 3
    for key in ("frame_arrival_ms", "set_arrival_ms"):
        assert 0 < floor[key]["p50"] <= floor[key]["p99"] < 1000
    assert floor["set_arrival_ms"]["p50"] >= floor["frame_arrival_ms"]["p50"]
    assert len(data["by_variant"]["cameras/launch"]["set_arrival_ms_p99"]) == 1
    cameras = data["cameras"]
    assert cameras["expected_sets_per_s"] == 30.0
    # the fake robot sent frames, the observation node received and assembled some (how
    # many is the figure the bench reports, not a pass mark)
    assert cameras["frames_sent_per_s"] > 0 and cameras["frames_received_per_s"] > 0
    assert cameras["sets_per_s"] > 0 and cameras["probe_sets_per_s"] > 0
    for key in ("frames_lost_fraction", "frames_dropped_by_sync_per_s"):
        assert math.isfinite(cameras[key])
    if data["per_scheduler"]["async"]["chunks"]:  # a loaded machine may put none in 4 s
        for key in ("p50", "p99"):
            assert math.isfinite(data["stack_overhead_ms"][key])
    assert data["driver_scheduling"] == "SCHED_OTHER"  # the fake robot, by default
    # CPU per process over the window, by node name (fake robot and the four nodes)
    cpu = data["per_scheduler"]["async"]["cpu_ms_per_s"]
    assert set(cpu) == {"fake", "wam_observation", "wam_policy", "wam_decoder", "wam_smoother"}
    assert all(v > 0 for v in cpu.values()), cpu
    variant = data["by_variant"]["launched/launch"]
    assert len(variant["stack_overhead_ms_p99"]) == 1 and len(variant["sets_per_s"]) == 1
    # pooled over the rounds (one here): the same chunks as the round's own figures
    for part in ("stack_overhead", "graph_overhead"):
        pooled = variant[f"{part}_ms_all_rounds"]
        samples = data["runs"][-1]["per_scheduler"]["async"]["samples_ms"][part]
        assert pooled["chunks"] == len(samples) == data["runs"][-1]["per_scheduler"]["async"][
            "chunks"]
        if samples:
            assert pooled["p99"] == pytest.approx(variant[f"{part}_ms_p99"][0], abs=0.01)


def _fifo_allowed(priority: int) -> bool:
    """Whether this user may run a thread SCHED_FIFO at `priority` (tried on a thread of its
    own, which then ends)."""
    import threading

    from wam_ros.runtime.threads import set_realtime

    why: list[str] = []
    t = threading.Thread(target=lambda: why.append(set_realtime(priority)))
    t.start()
    t.join()
    return why == [""]


def test_the_bench_runs_the_camera_driver_at_the_priority_it_is_given(ros_domain, tmp_path):
    """--driver-priority 0,40: the fake robot (cameras and controllers) at normal scheduling,
    then SCHED_FIFO 40 (where this user may), alternating; each run says how it ran."""
    out = tmp_path / "drivers.json"
    assert main(["bench", "pipeline", "--robot", "cobot_magic", "--config", "tiny",
                 "--graph", "cameras", "--cameras", "robot", "--driver-priority", "0,40",
                 "--duration", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    runs = data["runs"]
    assert [(r["graph"], r["driver_priority"]) for r in runs] == [("cameras", 0),
                                                                  ("cameras", 40)]
    assert runs[0]["camera_transport"]["driver_scheduling"] == "SCHED_OTHER"
    assert runs[1]["camera_transport"]["driver_scheduling"] == (
        "SCHED_FIFO 40" if _fifo_allowed(40) else "SCHED_OTHER")
    assert set(data["by_variant"]) == {"cameras/launch/driver-0", "cameras/launch/driver-40"}
    assert data["driver_priority"] == [0, 40]


def test_dds_profiles_of_the_bench(monkeypatch):
    """launch: what graph.dds_environment gives (the shipped profile unless the user set one)
    for graph and cameras; none: no profile variable for either; graph-only: none for the
    cameras only."""
    from wam_ros.apps.bench_pipeline import FASTRTPS_ENV, PROFILE_ENV, dds_env
    from wam_ros.dds import fastdds_major, profile_variable
    from wam_ros.paths import config_dir

    name = profile_variable(fastdds_major())  # the variable this Fast DDS reads
    shipped = str(config_dir() / "fastdds.xml")
    unset = {PROFILE_ENV: None, FASTRTPS_ENV: None}
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv(FASTRTPS_ENV, raising=False)
    launch = {**unset, name: shipped}
    assert dds_env("launch") == (launch, launch)
    assert dds_env("none") == (unset, unset)
    assert dds_env("graph-only") == (launch, unset)
    monkeypatch.setenv(name, "/users/own.xml")
    own = {**unset, name: "/users/own.xml"}
    assert dds_env("launch") == (own, own)
    assert dds_env("none") == (unset, unset)


@pytest.mark.parametrize("argv, says", [
    (["--graph", "launched,bogus"], "unknown graph 'bogus'"),
    (["--dds-profile", "nope"], "unknown DDS profile 'nope'"),
    (["--rounds", "0"], "--rounds 0"),
    (["--sessions", "launch,shared"], "unknown sessions 'shared'"),
    (["--graph", "cameras", "--cameras", "model"], "--graph cameras measures the robot's own"),
    (["--realtime-priority", "0,100"], "unknown realtime priority '100'"),
    (["--driver-priority", "40,-1"], "unknown driver priority '-1'"),
])
def test_bad_bench_choices_are_refused_before_anything_starts(tmp_path, capsys, argv, says):
    out = tmp_path / "pipeline.json"
    assert main(["bench", "pipeline", *argv, "--json", str(out)]) == 2
    assert says in capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize("param", ["sai_s_mid", "no_such_parameter=1"])
def test_a_bad_policy_parameter_is_refused_before_anything_starts(tmp_path, capsys, param):
    out = tmp_path / "pipeline.json"
    assert main(["bench", "pipeline", "--policy-param", param, "--json", str(out)]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().out
    assert not out.exists()
