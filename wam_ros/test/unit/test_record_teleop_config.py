"""The robot YAMLs' `teleop:` section: parsed into RobotSpec.teleop, mistakes named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec

ROBOTS_DIR = Path(__file__).resolve().parents[2] / "config" / "robots"


def test_cobot_magic_leaders_follow_the_piper_convention():
    spec = RobotSpec.load("cobot_magic")
    left, right = spec.teleop.sources
    assert (left.topic, right.topic) == ("/master/joint_left", "/master/joint_right")
    assert left.msgtype == "sensor_msgs/msg/JointState" and left.space == "absolute"
    assert left.names == tuple(f"joint{i}" for i in range(1, 8))
    assert left.joints == tuple(f"left_joint{i}" for i in range(1, 8))
    assert left.scale[-1] == 0.5 and set(left.scale[:-1]) == {1.0}
    covered = [j for s in spec.teleop.sources for j in s.joints]
    assert sorted(covered) == sorted(spec.action_layout)


def test_agibot_g1_uses_one_trajectory_command_topic_with_our_names():
    spec = RobotSpec.load("agibot_g1")
    (src,) = spec.teleop.sources
    assert src.msgtype == "trajectory_msgs/msg/JointTrajectory"
    assert src.names == src.joints and set(src.joints) == set(spec.action_layout)


def _error(tmp_path: Path, edit) -> str:
    data = yaml.safe_load((ROBOTS_DIR / "cobot_magic.yaml").read_text())
    edit(data["teleop"]["leaders"])
    data["urdf"] = str(ROBOTS_DIR.parents[1] / data["urdf"])
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        RobotSpec.from_yaml(path)
    assert str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["left"].update(type="twist"), ["teleop.leaders.left.type", "'twist'",
                                                "joint_state, joint_trajectory"]),
    (lambda d: d["left"]["joints"].update(joint7="left_joint9"),
     ["teleop.leaders.left.joints.joint7", "left_joint9"]),
    (lambda d: d["left"]["joints"].pop("joint3"), ["left_joint3", "driven by no leader"]),
    (lambda d: d["right"]["joints"].update(joint1="left_joint1"),
     ["left_joint1", "more than one leader"]),
    (lambda d: d["left"]["scale"].update(joint7=0), ["teleop.leaders.left.scale.joint7"]),
    (lambda d: d["left"].update(topc="/x"), ["teleop.leaders.left.topc", "did you mean"]),
    (lambda d: d["right"].update(topic="/master/joint_left"), ["share a topic"]),
    (lambda d: d["left"].update(space="velocity"), ["absolute, delta"]),
])
def test_mistakes_name_the_key_and_the_allowed_values(tmp_path, edit, words):
    message = _error(tmp_path, edit)
    for w in words:
        assert w in message, message


def test_a_robot_without_teleop_section_has_none(tmp_path):
    data = yaml.safe_load((ROBOTS_DIR / "cobot_magic.yaml").read_text())
    del data["teleop"]
    data["urdf"] = str(ROBOTS_DIR.parents[1] / data["urdf"])
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data))
    assert RobotSpec.from_yaml(path).teleop is None
