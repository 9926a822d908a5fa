"""MuJoCo scenes match our robot descriptions; servos track; cameras see the workspace; task
success is detected from the physics, not fooled by a cube left on the table or still held."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import pytest

from wam_ros.core.robot import RobotSpec
from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.scene import Scene, read_urdf
from wam_ros.sim.tasks import TASKS, WORKSPACES

ROBOTS = ["cobot_magic", "agibot_g1"]


@pytest.fixture(scope="module", params=ROBOTS)
def sim(request):
    with Simulator(request.param, "pick_place", seed=0) as s:
        yield s


@pytest.mark.parametrize("robot", ROBOTS)
def test_scene_joints_limits_and_mimics_match_the_robot(robot):
    spec = RobotSpec.load(robot)
    scene = Scene(spec)
    m = scene.model
    for name in spec.action_layout:
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert jid >= 0, name
        lim = spec.joints[name]
        np.testing.assert_allclose(m.jnt_range[jid], [lim.lower, lim.upper], err_msg=name)
        assert m.jnt_limited[jid]
        act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        assert m.actuator_trnid[act, 0] == jid
    # actuators in action-layout order, one per commanded joint
    assert [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(m.nu)] == \
        list(spec.action_layout)
    # every mimic finger follows its leader through a joint equality
    _, joints, _ = read_urdf(spec.urdf)
    mimics = {j.name: j.mimic for j in joints if j.mimic is not None}
    for gripper in spec.grippers.values():
        for name in gripper.mimic_joints:
            eq = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_EQUALITY, f"mimic_{name}")
            assert eq >= 0
            assert m.eq_type[eq] == mujoco.mjtEq.mjEQ_JOINT
            assert mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, m.eq_obj2id[eq]) == \
                mimics[name][0] == gripper.joint
    # held joints (G1 head, waist) are baked in, not simulated
    for name in spec.fixed_joints:
        assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name) == -1
    assert set(scene.camera_ids) == set(spec.camera_names)
    assert all(i >= 0 for i in scene.camera_ids.values())
    assert "<mujoco" in scene.xml()


def test_every_task_has_a_workspace_and_an_instruction():
    for name, cls in TASKS.items():
        assert cls.instruction
        for robot in ROBOTS:
            assert (robot, name) in WORKSPACES


def test_home_is_held_and_commands_are_tracked(sim):
    spec = sim.robot
    sim.reset(0)
    home = spec.home_vector()
    sim.step(0.5)
    arm = ~spec.gripper_mask()
    assert np.abs(sim.joint_positions() - home)[arm].max() < 2e-3
    # a smooth ramp streamed at the action rate, as the smoother sends it: lift the arms
    target = home.copy()
    lift = {"cobot_magic": {"left_joint2": -0.3, "right_joint2": -0.3, "left_joint6": 0.5,
                            "right_joint6": -0.5},
            "agibot_g1": {"idx21_arm_l_joint1": -0.3, "idx61_arm_r_joint1": -0.3,
                          "idx25_arm_l_joint5": 0.4, "idx65_arm_r_joint5": -0.4}}[spec.name]
    for joint, delta in lift.items():
        target[spec.action_layout.index(joint)] += delta
    errors = []
    n = 30
    for k in range(1, n + 1):
        sim.command_joints(home + (target - home) * k / n)
        sim.step(spec.action_dt)
        errors.append(np.abs(sim.joint_positions() - (home + (target - home) * k / n))[arm])
    assert np.max(errors) < 0.03, np.max(errors, axis=0)  # during a 1 rad/s ramp
    sim.step(0.3)
    np.testing.assert_allclose(sim.joint_positions()[arm], target[arm], atol=2e-3)
    # grippers in action units: 0 closed, 1 open (an empty gripper closes fully)
    action = spec.joint_to_action(target)
    action[spec.gripper_mask()] = 0.0
    sim.command_action(action)
    sim.step(1.5)  # force-limited fingers: G1's close at ~1.3 rad/s
    assert np.all(sim.state()[spec.gripper_mask()] < 0.05)


def test_cameras_render_the_workspace_with_the_cube_in_view(sim):
    sim.reset(3)
    sim.step(0.05)
    images = sim.render(width=96, height=72)
    assert list(images) == list(sim.robot.camera_names)
    for img in images.values():
        assert img.shape == (72, 96, 3) and img.dtype == np.uint8
        assert img.std() > 5.0  # not a blank frame
    high = sim.robot.camera_names[0]
    before = images[high].astype(int)
    # move the cube off the table: the high camera's picture must change where it was
    cube = sim.scene.free["cube"]
    sim.data.qpos[cube.qpos:cube.qpos + 3] = [0.0, 2.0, 0.1]
    mujoco.mj_forward(sim.model, sim.data)
    after = sim.render([high], width=96, height=72)[high].astype(int)
    changed = np.abs(before - after).sum(axis=2) > 60
    assert changed.sum() >= 4, "the cube is not visible in the high camera"
    red = (before[..., 0] > 150) & (before[..., 1] < 80) & (before[..., 2] < 80)
    assert (red & changed).sum() >= 2  # and what changed was red: the cube


def _put_cube(sim, xyz, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
    cube = sim.scene.free["cube"]
    sim.data.qpos[cube.qpos:cube.qpos + 3] = xyz
    sim.data.qpos[cube.qpos + 3:cube.qpos + 7] = quat
    sim.data.qvel[cube.dof:cube.dof + 6] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


def test_success_needs_the_cube_resting_in_the_bin(sim):
    sim.reset(1)
    top = sim.scene.layout.table_top
    sim.step(0.5)
    assert not sim.status().success  # the cube where it started, on the table
    assert sim.status().phase == "approach"
    bin_pos = sim.model.body_pos[sim.scene.fixtures["bin"]]
    # next to the bin, on the table: not a success
    _put_cube(sim, [bin_pos[0], bin_pos[1] + 0.12, top + 0.021])
    sim.step(0.5)
    assert not sim.status().success
    # dropped into the bin: success once it rests
    _put_cube(sim, [bin_pos[0], bin_pos[1], top + 0.06])
    sim.step(1.0)
    status = sim.status()
    assert status.success and status.phase == "done"
    assert status.as_dict()["success"] is True


def test_a_cube_held_over_the_bin_is_not_a_success():
    with Simulator("cobot_magic", "pick_place", seed=2) as sim:
        from wam_ros.sim.experts import make_expert

        plan = make_expert(sim).reset()
        for action, phase in zip(plan.actions, plan.phases):
            if phase == "release":
                break
            sim.command_action(action)
            sim.step(sim.robot.action_dt)
        status = sim.status()
        assert status.held_by == ("right",) and status.phase == "lifted"
        assert not status.success


def test_a_jittery_forward_stream_feeds_the_drive_its_average_velocity():
    """Commands sent every 10 ms that arrive unevenly (transport jitter: 2 and 18 ms apart in
    turn) give the drive the stream's velocity as feed-forward, not a spike per short gap."""
    with Simulator("agibot_g1", "pick_place", seed=0) as sim:
        spec = sim.robot
        sim.reset(0)
        j = spec.action_layout.index("idx61_arm_r_joint1")
        speed = 0.5  # rad/s: 5 mrad per command
        q = spec.home_vector()
        feed = []
        for k, gap in enumerate([0.01] * 10 + [0.002, 0.018] * 10):
            q[j] += speed * 0.01
            sim.command_joints(q)
            if k >= 10:
                feed.append(sim._goal_velocity(sim.time, sim.goal())[j])
            sim.step(gap)
        feed = np.abs(np.array(feed))
        assert np.all(np.abs(feed - speed) < 0.3 * speed), feed  # per-gap: 2.5 and 0.28 rad/s
