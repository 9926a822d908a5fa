"""Robot configs load, validate and fail loudly on typos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec, available_robots

ROBOTS_DIR = Path(__file__).resolve().parents[2] / "config" / "robots"


def test_both_robots_are_available():
    assert available_robots() == ["agibot_g1", "cobot_magic"]


def test_cobot_magic_facts():
    spec = RobotSpec.load("cobot_magic")
    assert spec.action_dim == 14
    assert spec.camera_names == ("cam_high", "cam_left_wrist", "cam_right_wrist")
    assert [c.topic for c in spec.cameras] == [
        "/camera_f/color/image_raw", "/camera_l/color/image_raw", "/camera_r/color/image_raw"]
    assert spec.joints["left_joint2"].lower == 0.0 and spec.joints["left_joint2"].upper == 3.14
    assert spec.joints["right_joint3"].lower == -2.967
    assert spec.grippers["left_joint7"].open == pytest.approx(0.038)
    assert spec.controller_of("left_joint3").topic == "/left_arm_controller/joint_trajectory"
    assert spec.controller_of("right_joint7").topic == "/right_gripper_controller/commands"
    assert spec.gripper_mask().sum() == 2


def test_agibot_g1_facts():
    spec = RobotSpec.load("agibot_g1")
    assert spec.action_dim == 16
    assert spec.action_layout[0] == "idx21_arm_l_joint1"
    assert spec.action_layout[13] == "idx67_arm_r_joint7"
    assert set(spec.grippers) == {"idx41_gripper_l_outer_joint1", "idx81_gripper_r_outer_joint1"}
    assert set(spec.fixed_joints) == {"idx01_body_joint1", "idx02_body_joint2",
                                      "idx11_head_joint1", "idx12_head_joint2"}
    assert {c.type for c in spec.controllers} == {"forward_command"}


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_home_inside_limits_and_gripper_mapping_round_trips(robot):
    spec = RobotSpec.load(robot)
    home = spec.home_vector()
    assert np.all(home >= spec.limits_array("lower"))
    assert np.all(home <= spec.limits_array("upper"))
    action = spec.joint_to_action(home)
    assert np.allclose(spec.action_to_joint(action), home)
    mask = spec.gripper_mask()
    # normalised grippers: 1 = open, whatever the robot's joint convention
    opened = spec.action_to_joint(np.where(mask, 1.0, 0.0))
    for i in np.flatnonzero(mask):
        assert opened[i] == pytest.approx(spec.grippers[spec.action_layout[i]].open)


def _write_variant(tmp_path: Path, robot: str, edit) -> Path:
    data = yaml.safe_load((ROBOTS_DIR / f"{robot}.yaml").read_text())
    edit(data)
    data["urdf"] = str(ROBOTS_DIR.parents[1] / data["urdf"])
    path = tmp_path / f"{robot}_variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _error(tmp_path, robot, edit) -> str:
    path = _write_variant(tmp_path, robot, edit)
    with pytest.raises(ConfigError) as info:
        RobotSpec.from_yaml(path)
    message = str(info.value)
    assert str(path) in message, message  # always names the file
    return message


def test_typo_in_key_names_file_key_and_suggestion(tmp_path):
    def edit(d):
        d["joints"]["left_joint1"]["veloctiy"] = d["joints"]["left_joint1"].pop("velocity")

    msg = _error(tmp_path, "cobot_magic", edit)
    assert "joints.left_joint1" in msg
    assert "velocity" in msg  # missing required key first, or the suggestion


def test_unknown_top_level_key_suggests_the_right_one(tmp_path):
    msg = _error(tmp_path, "cobot_magic", lambda d: d.update(control_rate=50))
    assert "control_rate: unknown key (did you mean 'control_rate_hz'?)" in msg
    assert "allowed here:" in msg


def test_missing_field(tmp_path):
    msg = _error(tmp_path, "agibot_g1", lambda d: d.pop("action_layout"))
    assert "action_layout: missing required key" in msg


def test_bad_controller_type_lists_allowed(tmp_path):
    def edit(d):
        d["controllers"]["left_arm_controller"]["type"] = "jtc"

    msg = _error(tmp_path, "cobot_magic", edit)
    assert "controllers.left_arm_controller.type" in msg
    assert "'jtc'" in msg and "joint_trajectory, forward_command" in msg


def test_unknown_joint_in_arm(tmp_path):
    def edit(d):
        d["arms"]["left"]["joints"][0] = "left_joint_1"

    msg = _error(tmp_path, "cobot_magic", edit)
    assert "arms.left.joints" in msg and "'left_joint_1'" in msg and "left_joint1" in msg


def test_home_outside_limits(tmp_path):
    msg = _error(tmp_path, "cobot_magic", lambda d: d["home"].update(left_joint2=-0.5))
    assert "home.left_joint2" in msg and "-0.5" in msg and ">= 0.0" in msg


def test_inverted_limits(tmp_path):
    def edit(d):
        d["joints"]["idx22_arm_l_joint2"]["lower"] = 2.0

    msg = _error(tmp_path, "agibot_g1", edit)
    assert "joints.idx22_arm_l_joint2.upper" in msg


def test_joint_without_controller(tmp_path):
    msg = _error(tmp_path, "agibot_g1", lambda d: d["controllers"].pop("right_gripper_controller"))
    assert "idx81_gripper_r_outer_joint1" in msg and "no controller" in msg


def test_bad_camera_encoding(tmp_path):
    def edit(d):
        d["cameras"]["cam_high"]["encoding"] = "yuv422"

    msg = _error(tmp_path, "cobot_magic", edit)
    assert "cameras.cam_high.encoding" in msg and "rgb8" in msg


def test_unknown_robot_lists_choices():
    with pytest.raises(ConfigError, match="allowed: agibot_g1, cobot_magic"):
        RobotSpec.load("cobot_magik")


def test_trajectory_lead_defaults_to_one_action_period_and_never_under_a_control_period(
        tmp_path):
    spec = RobotSpec.load("cobot_magic")
    assert spec.trajectory_lead_s == pytest.approx(spec.action_dt)
    set_lead = RobotSpec.from_yaml(_write_variant(
        tmp_path, "cobot_magic", lambda d: d.update(trajectory_lead_s=0.05)))
    assert set_lead.trajectory_lead_s == 0.05
    msg = _error(tmp_path, "cobot_magic", lambda d: d.update(trajectory_lead_s=0.01))
    assert "trajectory_lead_s: got 0.01; allowed: >= 0.02" in msg
