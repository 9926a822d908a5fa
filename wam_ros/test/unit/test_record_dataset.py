"""Bags -> dataset: time alignment, leader mapping (absolute and delta), images, summaries,
the CLI. No ROS needed: the bags are written with rosbags / our segmented writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from wam_ros.cli import main as cli_main
from wam_ros.core.robot import RobotSpec
from wam_ros.data.convert import BuildOptions, build_dataset, find_bags, stream_stats
from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.data.synthetic import frame_of, write_synthetic_episode

ROBOTS_DIR = Path(__file__).resolve().parents[2] / "config" / "robots"


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {
        "mcap": write_synthetic_episode(root / "ep_mcap", "cobot_magic", 3.0, seed=1),
        "sqlite3": write_synthetic_episode(root / "ep_sqlite", "agibot_g1", 3.0,
                                           storage="sqlite3", seed=2),
        "jpeg": write_synthetic_episode(root / "ep_jpeg", "cobot_magic", 2.0, seed=3,
                                        encoding="jpeg"),
    }


def test_actions_are_the_leader_commands_at_the_frame_times(bags, tmp_path):
    summaries = build_dataset([bags["mcap"]], tmp_path / "d", BuildOptions(image_size=(32, 32)),
                              progress=False, log=lambda _m: None)
    (s,) = summaries
    assert not s.skipped and s.action_source == "teleop" and s.complete and s.success
    assert s.frames == 89 and s.duration_s == pytest.approx(89 / 30)
    assert s.streams["/joint_states"].rate_hz == pytest.approx(50, abs=0.5)
    assert s.streams["/camera_f/color/image_raw"].rate_hz == pytest.approx(30, abs=0.5)
    assert all(st.gaps == 0 for st in s.streams.values())
    reader = EpisodeReader(tmp_path / "d")
    assert reader.info.image_size == (32, 32) and reader.info.dt == pytest.approx(1 / 30)
    ep = reader.episode(0)
    assert ep["image.cam_high"].shape == (89, 32, 32, 3)
    # the synthetic follower reaches the leader's command 0.1 s (3 frames) later
    assert np.abs(ep["action"][:-3] - ep["state"][3:]).max() < 1e-4
    assert np.all(np.diff(ep["stamp"]) == pytest.approx(1 / 30))
    # grippers normalised, inside 0..1; Piper's jaw opening (scale 0.5) mapped to one finger
    grip = RobotSpec.load("cobot_magic").gripper_mask()
    assert ep["action"][:, grip].min() >= 0 and ep["action"][:, grip].max() <= 1
    assert ep["action"][:, grip].max() > 0.9


def test_images_are_the_newest_frame_at_each_time_resized(bags, tmp_path):
    build_dataset([bags["mcap"]], tmp_path / "d", BuildOptions(image_size=(48, 64)),
                  progress=False, log=lambda _m: None)
    ep = EpisodeReader(tmp_path / "d").episode(0)
    spec = RobotSpec.load("cobot_magic")
    # the synthetic camera shows the follower state at its stamp: frame k at t_k
    for k in (0, 40, 88):
        want = frame_of(ep["state"][k].astype(np.float64), 48, 64, 0)
        assert np.abs(ep["image.cam_high"][k].astype(int) - want).mean() < 3.0, k
    assert spec.camera_names == EpisodeReader(tmp_path / "d").info.camera_names


def test_sqlite3_trajectory_commands_and_jpeg_cameras_convert(bags, tmp_path):
    (s,) = build_dataset([bags["sqlite3"]], tmp_path / "g1", BuildOptions(image_size=(32, 32)),
                         progress=False, log=lambda _m: None)
    assert s.frames == 89 and s.action_source == "teleop"
    ep = EpisodeReader(tmp_path / "g1").episode(0)
    assert np.abs(ep["action"][:-3] - ep["state"][3:]).max() < 1e-4
    (j,) = build_dataset([bags["jpeg"]], tmp_path / "jpg", BuildOptions(image_size=(32, 32)),
                         progress=False, log=lambda _m: None)
    assert j.frames == 59 and j.bad_images == 0


def test_delta_command_sources_become_absolute_actions(tmp_path):
    data = yaml.safe_load((ROBOTS_DIR / "agibot_g1.yaml").read_text())
    data["teleop"]["leaders"]["arms"]["space"] = "delta"
    data["urdf"] = str(ROBOTS_DIR.parents[1] / data["urdf"])
    robot = tmp_path / "g1_delta.yaml"
    robot.write_text(yaml.safe_dump(data))
    spec = RobotSpec.from_yaml(robot)
    bag = write_synthetic_episode(tmp_path / "bag", spec, 2.0, storage="sqlite3")
    (s,) = build_dataset([bag], tmp_path / "d", BuildOptions(robot=str(robot),
                                                             image_size=(16, 16)),
                         progress=False, log=lambda _m: None)
    ep = EpisodeReader(tmp_path / "d").episode(0)
    # same trajectory as an absolute source: the follower lags 3 frames behind the command
    assert s.frames == 59 and np.abs(ep["action"][:-3] - ep["state"][3:]).max() < 1e-3


def test_follower_fallback_incomplete_and_skips(tmp_path):
    bag = write_synthetic_episode(tmp_path / "b", "cobot_magic", 1.0)
    (s,) = build_dataset([bag], tmp_path / "d", BuildOptions(image_size=(16, 16),
                                                             action_source="follower"),
                         progress=False, log=lambda _m: None)
    ep = EpisodeReader(tmp_path / "d").episode(0)
    assert s.action_source == "follower"
    assert np.array_equal(ep["action"][:-1], ep["state"][1:])  # where the robot went next
    from wam_ros.data.bag_writer import update_custom_data

    update_custom_data(bag, complete=False, success=False)
    summaries = build_dataset([bag], tmp_path / "d2", BuildOptions(
        image_size=(16, 16), skip_incomplete=True), progress=False, log=lambda _m: None)
    assert "incomplete" in summaries[0].skipped
    summaries = build_dataset([bag], tmp_path / "d3", BuildOptions(
        image_size=(16, 16), only_success=True), progress=False, log=lambda _m: None)
    assert "success" in summaries[0].skipped


def test_gaps_are_found_and_directories_of_bags_expand(tmp_path):
    stamps = np.concatenate([np.arange(0, 1, 1 / 30), np.arange(1.3, 2, 1 / 30)])
    st = stream_stats(stamps, 2.5)
    assert st.gaps == 1 and st.max_gap_s == pytest.approx(0.3 + 1 / 30, abs=0.02)
    write_synthetic_episode(tmp_path / "eps" / "a", "cobot_magic", 0.5)
    write_synthetic_episode(tmp_path / "eps" / "b", "cobot_magic", 0.5, storage="sqlite3")
    assert [p.name for p in find_bags([tmp_path / "eps"])] == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        find_bags([tmp_path / "nowhere"])


def test_cli_builds_appends_and_reports(bags, tmp_path, capsys):
    out = tmp_path / "d"
    summary = tmp_path / "summary.json"
    argv = ["dataset", "build", str(bags["mcap"]), str(bags["jpeg"]), "--out", str(out),
            "--image-size", "32", "--quiet", "--json", str(summary), "--task", "wave"]
    assert cli_main(argv) == 0
    assert "2 of 2 episodes" in capsys.readouterr().out
    rows = json.loads(summary.read_text())
    assert [r["frames"] for r in rows] == [89, 59] and rows[0]["task"] == "wave"
    assert cli_main(argv[:3] + argv[4:]) == 0  # appended
    assert len(EpisodeReader(out)) == 3
    # another robot cannot join this dataset: reported, nothing written
    assert cli_main(["dataset", "build", str(bags["sqlite3"]), "--out", str(out),
                     "--image-size", "32", "--quiet"]) == 1
    assert len(EpisodeReader(out)) == 3
    assert cli_main(["dataset", "info", str(bags["mcap"])]) == 0
    assert "/master/joint_left" in capsys.readouterr().out
