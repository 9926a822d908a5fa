"""URDFs parse with a real URDF parser and agree with config/robots/*.yaml."""

from __future__ import annotations

import math

import pytest
import yourdfpy

from wam_ros.core.robot import RobotSpec


@pytest.fixture(params=["cobot_magic", "agibot_g1"])
def spec_and_urdf(request):
    spec = RobotSpec.load(request.param)
    urdf = yourdfpy.URDF.load(str(spec.urdf), build_scene_graph=True, load_meshes=False)
    return spec, urdf


def test_every_commanded_joint_matches_the_urdf(spec_and_urdf):
    spec, urdf = spec_and_urdf
    for name, lim in spec.joints.items():
        assert name in urdf.joint_map, f"{name} missing from {spec.urdf.name}"
        joint = urdf.joint_map[name]
        assert joint.type in ("revolute", "prismatic"), (name, joint.type)
        assert joint.mimic is None, f"{name} is commanded but mimics {joint.mimic.joint}"
        assert math.isclose(joint.limit.lower, lim.lower, abs_tol=1e-9), name
        assert math.isclose(joint.limit.upper, lim.upper, abs_tol=1e-9), name
        # we command at most what the hardware description allows
        assert lim.velocity <= joint.limit.velocity, name


def test_every_moving_urdf_joint_is_commanded_mimic_or_fixed(spec_and_urdf):
    spec, urdf = spec_and_urdf
    mimics = {m for g in spec.grippers.values() for m in g.mimic_joints}
    for joint in urdf.robot.joints:
        if joint.type == "fixed":
            continue
        if joint.name in mimics:
            assert joint.mimic is not None, f"{joint.name} should be a mimic joint"
            continue
        if joint.mimic is not None:
            assert joint.name in mimics, f"mimic joint {joint.name} not listed in config"
            continue
        assert joint.name in spec.joints or joint.name in spec.fixed_joints, joint.name


def test_fixed_joints_inside_urdf_limits(spec_and_urdf):
    spec, urdf = spec_and_urdf
    for name, value in spec.fixed_joints.items():
        limit = urdf.joint_map[name].limit
        assert limit.lower <= value <= limit.upper, name


def test_every_camera_has_a_frame(spec_and_urdf):
    spec, urdf = spec_and_urdf
    for cam in spec.cameras:
        assert f"{cam.name}_link" in urdf.link_map
        assert f"{cam.name}_optical_frame" in urdf.link_map


def test_home_pose_forward_kinematics_is_sane(spec_and_urdf):
    """At home both grippers hang in front of the robot, left of centre on the left arm."""
    spec, urdf = spec_and_urdf
    cfg = {j: spec.home[j] for j in urdf.actuated_joint_names if j in spec.home}
    cfg.update({j: v for j, v in spec.fixed_joints.items() if j in urdf.actuated_joint_names})
    urdf.update_cfg(cfg)
    base = "base_link"
    hands = {}
    for side, arm in ((a.name, a) for a in spec.arms):
        link = urdf.joint_map[arm.gripper.joint].parent
        hands[side] = urdf.get_transform(link, base)[:3, 3]
    assert hands["left"][1] > hands["right"][1]
    for pos in hands.values():
        assert pos[0] > 0.05  # in front of the base origin
        assert all(math.isfinite(v) for v in pos)
