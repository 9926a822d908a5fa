"""Scripted experts solve the tasks within the robots' velocity limits, deterministically;
expert episodes become a dataset EpisodeReader reads back."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import pytest

from wam_ros.data.dataset_reader import EpisodeReader
from wam_ros.sim.expert_rollout import execute_plan, run_expert
from wam_ros.sim.experts import make_expert
from wam_ros.sim.generate import Disturbance, Miss, Recovery, generate_dataset
from wam_ros.sim.ik import grasp_rotation
from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.planning import PlanningError, pre_grasp


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_expert_solves_pick_place_within_the_velocity_limits(robot):
    with Simulator(robot, "pick_place") as sim:
        spec = sim.robot
        vmax = spec.limits_array("velocity")
        for seed in (11, 12, 13):
            rollout = run_expert(sim, seed=seed)
            assert rollout.success, (seed, rollout.phase)
            assert rollout.seconds < 10.0
            joints = spec.action_to_joint(rollout.plan.actions)
            steps = np.abs(np.diff(joints, axis=0)) / spec.action_dt
            assert np.all(steps <= vmax + 1e-9), (steps / vmax).max()
            lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
            assert np.all(joints >= lower - 1e-9) and np.all(joints <= upper + 1e-9)


def test_pre_grasp_backs_off_along_the_gripper_axis():
    target = np.array([0.4, -0.2, 0.76])
    up = np.array([0.0, 0.0, 0.1])
    np.testing.assert_allclose(pre_grasp(target, 0.7, 0.0, 0.1), target + up)
    tilted = pre_grasp(target, 0.0, 1.0, 0.1)
    np.testing.assert_allclose(np.linalg.norm(tilted - target), 0.1)
    # fingertips tilted forward (+x): the hand waits behind and above, the target on its axis
    assert tilted[0] < target[0] and tilted[2] > target[2]
    axis = grasp_rotation(0.0, 1.0) @ [0, 0, -1]
    np.testing.assert_allclose(np.cross(target - tilted, axis), 0, atol=1e-12)


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_the_cube_stays_in_the_hand_camera_view_before_the_grasp(robot):
    """Where the expert turns the gripper to the cube's yaw (G1: at the pre-grasp pose), a
    policy must see the cube to know which way: from the pre-grasp pose to the grasp the cube
    is inside the grasping hand camera's field of view (and in front of it)."""
    with Simulator(robot, "pick_place") as sim:
        camera = {"cobot_magic": "cam_right_wrist", "agibot_g1": "hand_right_color"}[robot]
        cam = sim.scene.camera_ids[camera]
        half_fovy = np.radians(sim.model.cam_fovy[cam]) / 2
        for seed in (21, 22, 23):
            sim.reset(seed)
            plan = make_expert(sim).reset()
            phases = np.array(plan.phases)
            start = int(np.argmax(phases == "descend")) - 15  # end of approach / alignment
            grasp = int(np.argmax(phases == "grasp"))
            for k, action in enumerate(plan.actions[:grasp]):
                if k >= start:
                    cube = sim.object_poses()["cube"][:3]
                    rel = sim.data.cam_xmat[cam].reshape(3, 3).T @ (cube - sim.data.cam_xpos[cam])
                    assert rel[2] < 0, (seed, k)  # MuJoCo cameras look along -z
                    off_axis = np.arctan2(np.hypot(rel[0], rel[1]), -rel[2])
                    assert off_axis < half_fovy, (seed, k, np.degrees(off_axis))
                sim.command_action(action)
                sim.step(sim.robot.action_dt)


def test_expert_plans_depend_only_on_the_object_poses():
    with Simulator("cobot_magic", "pick_place") as sim:
        sim.reset(5)
        first = make_expert(sim).reset().actions
        sim.step(0.5)
        sim.reset(5)  # the same seed again: the very same plan
        np.testing.assert_array_equal(make_expert(sim).reset().actions, first)
        sim.step(0.5)  # time passes, the cube settles by micrometres: (nearly) the same plan
        np.testing.assert_allclose(make_expert(sim).reset().actions, first, atol=1e-3)
        sim.reset(6)
        assert make_expert(sim).reset().actions.shape != first.shape or not np.allclose(
            make_expert(sim).reset().actions, first)


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_expert_recovers_from_a_hand_left_low_beside_the_cube_with_its_gripper_shut(robot):
    """Recovery plans (DAgger-style data): from wherever a policy left the arm, the plan
    starts at the measured joints (its first action is one step away), rises before it
    moves (the cube is not swept away), opens the gripper, and still solves the task within
    the velocity limits."""
    with Simulator(robot, "pick_place") as sim:
        spec = sim.robot
        sim.reset(31)
        expert = make_expert(sim)
        x, y, z, yaw = sim.object_poses()["cube"]
        # beside the cube, at its height, gripper closed: a missed grasp
        low = expert._ik("right", [x - 0.07, y + 0.02, z + 0.01], yaw, spec.home_vector())
        action = spec.joint_to_action(low)
        action[sim.scene.gripper_of_arm["right"]] = 0.0
        sim.command_action(action, duration=1.5)
        sim.step(2.0)
        cube_before = sim.object_poses()["cube"].copy()
        start = sim.joint_positions()
        plan = expert.plan(sim.object_poses(), start=start)
        joints = spec.action_to_joint(plan.actions)
        steps = np.abs(np.diff(np.vstack([start, joints]), axis=0)) / spec.action_dt
        assert np.all(steps <= spec.limits_array("velocity") + 1e-9), (steps / spec.limits_array(
            "velocity")).max()
        grip = sim.scene.gripper_of_arm["right"]
        assert plan.actions[0, grip] < 0.1 and plan.actions[:, grip].max() == 1.0
        rise = int(np.argmax(plan.actions[:, grip] > 0.99))  # rises first, then opens
        tcp, _ = expert.ik.tcp(spec.action_to_joint(plan.actions[rise]), "right")
        assert tcp[2] > z + expert.recovery_clearance
        cube_at: list[np.ndarray] = []
        status = execute_plan(sim, plan, lambda sim, a: cube_at.append(
            sim.object_poses()["cube"][:2]))
        assert status.success, status.phase
        # the way to the pre-grasp did not push the cube: it was still where it lay
        descend = plan.phases.index("descend")
        np.testing.assert_allclose(cube_at[descend], cube_before[:2], atol=0.005)


def test_handover_has_no_recovery_plan():
    with Simulator("cobot_magic", "handover", seed=2) as sim:
        with pytest.raises(PlanningError, match="no recovery plan"):
            make_expert(sim).plan(sim.object_poses(), start=sim.joint_positions())


def test_recovery_episodes_start_where_the_policy_left_the_robot(tiny_checkpoint, tmp_path):
    """`generate_dataset(recovery=...)`: the checkpoint drives the robot through the runtime
    until the switch, the expert finishes; only the expert's part is recorded, and the index
    says where each episode came from."""
    ckpt = tiny_checkpoint("cobot_magic")
    recovery = Recovery(str(ckpt), switch_s=(0.6, 0.8), latency_s=0.05, latency_p99_s=None)
    report = generate_dataset("cobot_magic", "pick_place", episodes=1, out=tmp_path / "rec",
                              image_size=(32, 40), seed=7, progress=False, recovery=recovery)
    assert report.episodes == 1, report
    reader = EpisodeReader(tmp_path / "rec")
    ep = reader.episode(0)
    source = reader.source(0)
    assert source["recovery_from"] == str(ckpt) and 0.6 <= source["switch_s"] <= 0.8
    assert source["seed"] == 7 + report.failed  # seeds in order: the first success
    assert ep["stamp"][0] >= source["switch_s"] - 1e-6  # recorded from the switch on
    with Simulator("cobot_magic", "pick_place") as sim:
        # the policy's part moved the arm: the recording does not start at home
        home = sim.robot.joint_to_action(sim.robot.home_vector())
        assert np.abs(ep["state"][0] - home).max() > 1e-3
    assert ep["action"][:, 13].min() == 0.0  # the expert grasped
    with pytest.raises(ValueError, match="switch_s"):
        Recovery(str(ckpt), switch_s=(3.0, 1.0))


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_a_disturbed_approach_is_corrected_by_the_descent(robot):
    """`plan(pregrasp_error=...)`: the approach ends off by the error (position and yaw), the
    descent still ends at the true grasp with the cube's yaw, and the task is solved."""
    with Simulator(robot, "pick_place") as sim:
        sim.reset(41)
        expert = make_expert(sim)
        x, y, z, yaw = sim.object_poses()["cube"]
        error = np.array([0.02, -0.015, 0.01, 0.12])
        plan = expert.plan(sim.object_poses(), pregrasp_error=error)
        clean = expert.plan(sim.object_poses())
        spec = sim.robot
        descend, grasp = plan.phases.index("descend"), plan.phases.index("grasp")
        start, _ = expert.ik.tcp(spec.action_to_joint(plan.actions[descend - 1]), "right")
        start0, _ = expert.ik.tcp(spec.action_to_joint(
            clean.actions[clean.phases.index("descend") - 1]), "right")
        np.testing.assert_allclose(start - start0, error[:3], atol=0.003)
        end, rot = expert.ik.tcp(spec.action_to_joint(plan.actions[grasp]), "right")
        np.testing.assert_allclose(end, [x, y, z], atol=0.003)
        end_yaw = np.arctan2(rot[1, 0], rot[0, 0])
        assert abs(np.angle(np.exp(1j * (end_yaw - yaw)))) < 0.02
        joints = spec.action_to_joint(plan.actions)
        steps = np.abs(np.diff(joints, axis=0)) / spec.action_dt
        assert np.all(steps <= spec.limits_array("velocity") + 1e-9)
        assert execute_plan(sim, plan).success
        with pytest.raises(ValueError, match="pregrasp_error"):
            expert.plan(sim.object_poses(), pregrasp_error=[0.01, 0.0])


def test_a_late_disturbance_is_corrected_over_the_cube_then_descends():
    """`plan(pregrasp_error=..., pregrasp_distance=d)`: the approach reaches the true
    pre-grasp, then the erroneous pose d from the grasp; the descent first moves back over the
    cube at d, then down to the true grasp, and the task is solved."""
    with Simulator("agibot_g1", "pick_place") as sim:
        sim.reset(43)
        expert = make_expert(sim)
        poses = sim.object_poses()
        error = np.array([-0.03, 0.015, 0.005, 0.1])
        plan = expert.plan(poses, pregrasp_error=error, pregrasp_distance=0.04)
        clean = expert.plan(poses)
        spec = sim.robot

        def tcp(actions, i):
            return expert.ik.tcp(spec.action_to_joint(actions[i]), "right")[0]

        descend = plan.phases.index("descend")
        # the approach passes the true pre-grasp (where the clean plan's descent starts)
        true_pre = tcp(clean.actions, clean.phases.index("descend") - 1)
        passes = min(np.linalg.norm(tcp(plan.actions, i) - true_pre) for i in range(descend))
        assert passes < 0.003
        near = pre_grasp(poses["cube"][:3], poses["cube"][3], expert.ik.tilt, 0.04)
        np.testing.assert_allclose(tcp(plan.actions, descend - 1) - near, error[:3], atol=0.003)
        # back over the cube at the same distance before going down
        path = np.array([tcp(plan.actions, i)
                         for i in range(descend, plan.phases.index("grasp"))])
        assert np.linalg.norm(path - near, axis=1).min() < 0.003
        np.testing.assert_allclose(tcp(plan.actions, plan.phases.index("grasp")),
                                   poses["cube"][:3], atol=0.003)
        assert execute_plan(sim, plan).success
        with pytest.raises(ValueError, match="pregrasp_distance"):
            expert.plan(poses, pregrasp_error=error, pregrasp_distance=0.2)
    with pytest.raises(ValueError, match="distance"):
        Disturbance(0.03, 0.01, 0.1, distance_m=0.1)


def test_disturbed_episodes_are_recorded_from_the_correction_on(tmp_path):
    """`generate_dataset(disturbance=...)`: the error is drawn from the seed within the
    bounds, the recording starts at the descent (off the true pre-grasp by that error), and
    the index keeps the error."""
    d = Disturbance(0.03, 0.01, 0.1)
    errors = np.array([d.draw(s) for s in range(200)])
    assert np.hypot(errors[:, 0], errors[:, 1]).max() <= 0.03
    assert np.abs(errors[:, 2]).max() <= 0.01 and np.abs(errors[:, 3]).max() <= 0.1
    assert np.hypot(errors[:, 0], errors[:, 1]).max() > 0.025  # the bounds are reached
    np.testing.assert_array_equal(d.draw(7), d.draw(7))
    report = generate_dataset("agibot_g1", "pick_place", episodes=1, out=tmp_path / "dist",
                              image_size=(32, 40), seed=3, progress=False, disturbance=d)
    assert report.episodes == 1, report
    reader = EpisodeReader(tmp_path / "dist")
    ep, source = reader.episode(0), reader.source(0)
    seed = source["seed"]
    np.testing.assert_allclose(source["pregrasp_error"], d.draw(seed), atol=1e-4)
    assert ep["stamp"][0] >= source["from_s"] > 2.0  # the approach is not in the data
    with Simulator("agibot_g1", "pick_place") as sim:
        sim.reset(seed)
        expert = make_expert(sim)
        clean = expert.reset()
        spec = sim.robot
        # the first recorded state: the disturbed pre-grasp (the arm lags its command a little)
        start, _ = expert.ik.tcp(spec.action_to_joint(ep["state"][0]), "right")
        planned, _ = expert.ik.tcp(spec.action_to_joint(
            clean.actions[clean.phases.index("descend") - 1]), "right")
        np.testing.assert_allclose(start - planned, d.draw(seed)[:3], atol=0.01)
    grip = spec.action_layout.index("idx81_gripper_r_outer_joint1")
    # recorded with the gripper open, then the grasp
    assert ep["action"][0, grip] == 1.0 and ep["action"][:, grip].min() == 0.0
    with pytest.raises(ValueError, match="one"):
        generate_dataset("agibot_g1", "pick_place", 1, tmp_path / "x", disturbance=d,
                         recovery=Recovery("ckpt"))
    with pytest.raises(ValueError, match="pick_place"):
        generate_dataset("agibot_g1", "handover", 1, tmp_path / "x", disturbance=d)
    with pytest.raises(ValueError, match="disturbance"):
        Disturbance(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="disturbance"):
        Disturbance(-0.01, 0.0, 0.1)


def test_missed_grasp_episodes_record_the_recovery_from_an_empty_closed_gripper(tmp_path):
    """`generate_dataset(miss=...)`: the expert closes the gripper beside or above the cube
    (drawn from the seed), which leaves it empty; the recording starts there, closed and
    beside the cube, and the expert's recovery then opens, grasps and solves the task."""
    m = Miss(0.035, 0.045)
    errors = np.array([m.draw(s) for s in range(200)])
    beside, above = errors[errors[:, 2] == 0.0], errors[errors[:, 2] > 0.0]
    assert 60 < len(beside) < 140 and len(beside) + len(above) == 200
    lateral = np.hypot(beside[:, 0], beside[:, 1])
    assert lateral.min() >= 0.75 * 0.035 - 1e-9 and lateral.max() <= 1.25 * 0.035 + 1e-9
    assert above[:, 2].min() >= 0.75 * 0.045 - 1e-9 and above[:, 2].max() <= 1.25 * 0.045
    assert np.hypot(above[:, 0], above[:, 1]).max() <= 0.01
    np.testing.assert_array_equal(m.draw(7), m.draw(7))
    with Simulator("agibot_g1", "pick_place") as sim:  # the miss plan aims off the cube
        sim.reset(5)
        expert = make_expert(sim)
        cube = sim.object_poses()["cube"][:3]
        error = np.array([0.0, 0.0, 0.04])
        plan = expert.plan(sim.object_poses(), grasp_error=error)
        aim, _ = expert.ik.tcp(sim.robot.action_to_joint(
            plan.actions[plan.phases.index("grasp")]), "right")
        np.testing.assert_allclose(aim, cube + error, atol=0.003)
        with pytest.raises(ValueError, match="grasp_error"):
            expert.plan(sim.object_poses(), grasp_error=[0.01, 0.0])
    report = generate_dataset("agibot_g1", "pick_place", episodes=1, out=tmp_path / "miss",
                              image_size=(32, 40), seed=3, progress=False, miss=m)
    assert report.episodes == 1, report
    reader = EpisodeReader(tmp_path / "miss")
    ep, source = reader.episode(0), reader.source(0)
    np.testing.assert_allclose(source["grasp_error"], m.draw(source["seed"]), atol=1e-4)
    assert ep["stamp"][0] >= source["from_s"] > 2.0  # the miss itself is not in the data
    grip = sim.robot.action_layout.index("idx81_gripper_r_outer_joint1")
    # recorded from the closed, empty gripper: it opens, then grasps the cube for real
    assert ep["state"][0, grip] < 0.25  # holding the cube stops it near 0.6
    opened = int(np.argmax(ep["action"][:, grip] > 0.9))
    assert opened > 0 and ep["action"][opened:, grip].min() == 0.0
    with Simulator("agibot_g1", "pick_place") as sim:
        sim.reset(source["seed"])
        cube = sim.object_poses()["cube"][:3]
        tcp, _ = make_expert(sim).ik.tcp(sim.robot.action_to_joint(ep["state"][0]), "right")
        # where the miss left the hand: the aimed point, within the arm's lag
        np.testing.assert_allclose(tcp, cube + m.draw(source["seed"]), atol=0.015)
    # open_first: the recording starts by opening the gripper where it closed, arm still
    report = generate_dataset("agibot_g1", "pick_place", episodes=1, out=tmp_path / "open",
                              image_size=(32, 40), seed=3, progress=False,
                              miss=Miss(0.035, 0.045, open_first=True))
    assert report.episodes == 1, report
    reader = EpisodeReader(tmp_path / "open")
    ep = reader.episode(0)
    assert reader.source(0)["open_first"] is True
    opened = int(np.argmax(ep["action"][:, grip] >= 1.0))
    right = next(a for a in sim.robot.arms if a.name == "right")
    arm = [sim.robot.action_layout.index(j) for j in right.joints]
    assert 0 < opened < 30 and ep["state"][0, grip] < 0.25
    held = ep["action"][:opened + 1][:, arm]
    assert np.abs(held - held[0]).max() < 1e-6  # the arm holds while the gripper opens
    with pytest.raises(ValueError, match="one"):
        generate_dataset("agibot_g1", "pick_place", 1, tmp_path / "x", miss=m,
                         disturbance=Disturbance())
    with pytest.raises(ValueError, match="miss"):
        Miss(0.0, 0.04)


@pytest.mark.parametrize("extra", [
    ["--task", "handover", "--disturb", "0.03", "0.01", "0.1"],
    ["--disturb", "0.03", "0.01", "0.1", "--recover", "ckpt"],
    ["--disturb", "0.03", "-0.01", "0.1"],
    ["--miss", "0.03", "0.04", "--disturb", "0.03", "0.01", "0.1"],
    ["--disturb-distance", "0.04"],
    ["--disturb", "0.03", "0.01", "0.1", "--disturb-distance", "0.12"],
])
def test_generate_refuses_disturbances_it_cannot_make(extra, tmp_path, capsys):
    from wam_ros.cli import main

    assert main(["sim", "generate", "--robot", "agibot_g1", "--episodes", "1", "--out",
                 str(tmp_path / "d"), *extra]) == 2
    assert "--disturb" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("robot", ["cobot_magic", "agibot_g1"])
def test_expert_hands_the_bar_over(robot):
    with Simulator(robot, "handover") as sim:
        rollout = run_expert(sim, seed=21)
        assert rollout.success, rollout.phase
        assert sim.status().phase == "done"


def test_handover_success_needs_the_handover():
    """The bar put straight onto the target (no arm ever held it) is not a success."""
    with Simulator("cobot_magic", "handover", seed=4) as sim:
        target = sim.model.body_pos[sim.scene.fixtures["target"]]
        bar = sim.scene.free["bar"]
        sim.data.qpos[bar.qpos:bar.qpos + 3] = [target[0], target[1], target[2] + 0.021]
        sim.data.qpos[bar.qpos + 3:bar.qpos + 7] = [1, 0, 0, 0]
        mujoco.mj_forward(sim.model, sim.data)
        sim.step(0.5)
        assert sim.task._on_target(sim.model, sim.data)
        assert not sim.status().success
        assert sim.status().phase == "approach"


def test_generated_episodes_read_back(tmp_path):
    report = generate_dataset("cobot_magic", "pick_place", episodes=2, out=tmp_path / "data",
                              image_size=(32, 40), seed=3, workers=1, progress=False)
    assert report.episodes == 2 and report.failed == 0
    assert report.frames_per_second > 0
    reader = EpisodeReader(tmp_path / "data")
    assert len(reader) == 2
    assert reader.info.image_size == (32, 40)
    assert reader.info.camera_names == ("cam_high", "cam_left_wrist", "cam_right_wrist")
    assert reader.task(0) == "pick up the red cube and put it in the blue bin"
    assert reader.source(1) == {"seed": 4, "expert": "pick_place"}
    ep = reader.episode(0)
    n = reader.length(0)
    assert n > 100
    assert ep["image.cam_high"].shape == (n, 32, 40, 3)
    assert ep["state"].shape == ep["action"].shape == (n, 14)
    assert np.all(np.diff(ep["stamp"]) > 0)
    grip = np.array([6, 13])
    assert np.all((ep["state"][:, grip] >= 0) & (ep["state"][:, grip] <= 1))
    assert ep["action"][:, 13].min() == 0.0  # the right gripper closed on the cube
    # state follows action: the measured pose ends near the last command
    np.testing.assert_allclose(ep["state"][-1, :6], ep["action"][-1, :6], atol=0.01)
    # the object poses (privileged, for the object head): the cube rises, ends near the bin
    assert reader.info.objects == ("cube.x", "cube.y", "cube.z", "cube.yaw",
                                   "bin.x", "bin.y", "bin.z", "bin.yaw")
    cube, bin_ = ep["objects"][:, :4], ep["objects"][:, 4:]
    assert ep["objects"].shape == (n, 8) and np.ptp(bin_, axis=0).max() == 0.0
    assert cube[:, 2].max() > cube[0, 2] + 0.05
    assert np.linalg.norm(cube[-1, :2] - bin_[-1, :2]) < 0.05


def test_expert_operator_drives_a_teleop_episode_and_replaces_unplannable_scenes():
    """The operator of `wam-ros record --sim mujoco --teleop expert`: a seeded reset plans on a
    fresh scene, actions are looked up by episode time (any teleop rate), a reset without seed
    keeps the plan, and a scene the expert cannot plan for is replaced by the next seed's."""
    from wam_ros.sim.expert_rollout import ExpertOperator

    with Simulator("cobot_magic", "pick_place") as sim:
        seeds: list[int | None] = []

        def new_episode(seed):
            seeds.append(seed)
            sim.reset(seed)
            return sim.object_poses()

        operator = ExpertOperator(make_expert(sim), new_episode)
        operator.reset(None, seed=11)
        plan = operator.plan_.actions
        operator.reset(None)  # the teleop node's first tick: the plan stays
        assert seeds == [11] and operator.plan_.actions is plan
        dt = 1.0 / 50.0  # the teleop node's rate, not the action rate
        for k in range(int(len(plan) * sim.robot.action_dt / dt) + 25):
            sim.command_action(operator.action(k * dt, None))
            sim.step(dt)
        assert sim.status().success, sim.status().phase
        np.testing.assert_array_equal(operator.action(1e3, None), plan[-1])

        expert = make_expert(sim)
        real_plan, failures = expert.plan, [1]

        def flaky_plan(poses):
            if failures:
                failures.pop()
                raise PlanningError("descend: no smooth IK path")
            return real_plan(poses)

        expert.plan = flaky_plan
        operator = ExpertOperator(expert, new_episode)
        operator.reset(None, seed=20)
        assert seeds[-2:] == [20, None] and sim.seed == 21
        assert operator.skipped == ["descend: no smooth IK path"]
        expert.plan = lambda poses: (_ for _ in ()).throw(PlanningError("never"))
        with pytest.raises(PlanningError, match="no plan in 2 scenes"):
            ExpertOperator(expert, new_episode, attempts=2).reset(None, seed=30)
