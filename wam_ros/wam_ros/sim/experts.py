"""Scripted experts: plan a whole episode from the objects' poses, replay it at the action rate.

An expert reads the task's object poses once after reset (`Simulator.object_poses()`), and
plans a sequence of segments — joint-space moves for the big transfers (from home, back to
home), straight Cartesian moves of the TCP for approach, descent, lift and transport, gripper
ramps — each with a minimum-jerk time law, its duration stretched until every joint stays
under 85 % of the robot config's velocity limit at the action rate. Cartesian moves are
solved by damped-least-squares IK on the TCP site (`mj_jacSite`), gripper pointing down, yaw
matched to the object, warm-started frame to frame. The result is deterministic given the
poses, and smooth (zero velocity at every keyframe), which keeps it learnable.

Actions are absolute positions in the robot's action layout (grippers 0 closed .. 1 open),
one per 1 / action_rate_hz.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import numpy as np
from scipy.optimize import least_squares

from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.scene import Scene

OPEN, CLOSED = 1.0, 0.0
VELOCITY_MARGIN = 0.85  # share of the config's joint velocity limit the expert plans with
CART_SPEED = 0.35  # m/s: peak TCP speed of Cartesian moves
YAW_SPEED = 2.0  # rad/s: peak wrist yaw rate of Cartesian moves
# fingertips tilted (rad, towards the gripper's +x) in every grasp, per (robot, task): G1's
# wrist pitch (+-1 rad in our config) cannot point the gripper straight down at table height;
# values found by scanning the workspaces for IK paths without joint jumps
GRASP_TILT = {("agibot_g1", "pick_place"): 1.0, ("agibot_g1", "handover"): 0.5}
# Robots whose hand cameras do not see the object from home (G1's look over the table's edge):
# the hand reaches its pre-grasp pose at the neutral yaw and turns to the grasp yaw there, in
# view of its camera, so a policy can see which way to turn (the head camera shows a 4 cm cube
# as a few pixels at the model's 96x96).
ALIGN_ABOVE = {("agibot_g1", "pick_place")}
# Where the object's position must come from the hand camera too (G1: at 96x96 the head camera
# shows the cube as a few pixels; a policy trained without this went to the same pre-grasp pose
# whatever the cube's position), the hand first goes to a fixed look pose: pointing at the pick
# region's centre from this far back along the gripper's axis, the whole region in the hand
# camera's view. That move is the same in every episode; from there on the cube is in view.
LOOK_DISTANCE = {("agibot_g1", "pick_place"): 0.20}
MAX_STRETCH = 4.0  # a segment needing more than this much time stretch has a joint jump


class PlanningError(RuntimeError):
    """The expert found no smooth plan for these object poses (the episode is skipped)."""


def shifted(point, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> np.ndarray:
    """A point moved by (dx, dy, dz)."""
    return np.asarray(point, dtype=np.float64) + np.array([dx, dy, dz])


def pre_grasp(target, yaw: float, tilt: float, distance: float) -> np.ndarray:
    """The pre-grasp TCP point: `distance` back from `target` along the fingertips' pointing
    direction (`grasp_rotation(yaw, tilt)` applied to the gripper's -z). Straight above the
    target for an untilted grasp; for a tilted one the target stays on the gripper's axis, in
    front of the hand camera, and the descent runs along that axis."""
    pointing = grasp_rotation(yaw, tilt) @ np.array([0.0, 0.0, -1.0])
    return np.asarray(target, dtype=np.float64) - distance * pointing


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk time law on [0, 1] (zero velocity and acceleration at both ends)."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s * s)


MIN_JERK_PEAK = 1.875  # peak of d(min_jerk)/ds


def grasp_rotation(yaw: float, tilt: float = 0.0) -> np.ndarray:
    """Gripper orientation: pointing down (with our URDFs the gripper frame equals the world
    frame when the arm hangs straight down), fingertips tilted forward by `tilt` about the
    fingers' closing axis (they still close horizontally), then turned by `yaw` about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    c, s = np.cos(-tilt), np.sin(-tilt)
    ry = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return rz @ ry


class ArmIK:
    """IK of one arm's TCP site: position + gripper orientation (`grasp_rotation`), as a
    bounded damped least-squares problem (scipy's trust-region solver keeps every joint inside
    the config's limits; the Jacobian comes from `mj_jacSite`), with a small pull towards the
    home posture that settles redundant arms. Runs on a private MjData: the simulation is
    never touched."""

    def __init__(self, scene: Scene, tilt: float = 0.0, rotation_weight: float = 0.3,
                 posture_weight: float = 0.002) -> None:
        self.scene = scene
        self.model = scene.model
        self.data = mujoco.MjData(self.model)
        self.tilt = tilt
        self.rotation_weight = rotation_weight
        self.posture_weight = posture_weight
        self.lower = scene.robot.limits_array("lower")
        self.upper = scene.robot.limits_array("upper")
        self.rest = scene.robot.home_vector()
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self.scene.joint_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def tcp(self, q: np.ndarray, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and rotation (3, 3) of the arm's TCP for joint positions q (D,)."""
        self._set(q)
        site = self.scene.tcp_site[arm]
        return self.data.site_xpos[site].copy(), self.data.site_xmat[site].reshape(3, 3).copy()

    def solve(self, arm: str, pos: np.ndarray, yaw: float, seed: np.ndarray,
              restarts: int = 0, rest: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Joint positions (D,) (only `arm`'s joints change) putting the TCP at `pos`, gripper
        down with `yaw`; returns them and the remaining position error (m). With `restarts`,
        also tries the home pose and that many fixed pseudo-random starts and keeps the best
        (ties go to the solution nearest the seed): for keyframes far from the seed. The posture
        pull goes towards `rest` (default: home); rest = seed gives the smallest joint motion,
        what a path followed frame by frame wants."""
        rest = self.rest if rest is None else np.asarray(rest, dtype=np.float64)
        idx = self.scene.arm_index[arm]
        dofs = self.scene.arm_dofs[arm]
        site = self.scene.tcp_site[arm]
        target_rot = grasp_rotation(yaw, self.tilt)
        pos = np.asarray(pos, dtype=np.float64)
        q = np.array(seed, dtype=np.float64)
        lo, hi = self.lower[idx], self.upper[idx]
        w, k = self.rotation_weight, self.posture_weight  # posture: 1 rad ~ 2 mm
        n = len(idx)

        def residual(x: np.ndarray) -> np.ndarray:
            q[idx] = x
            self._set(q)
            rot = self.data.site_xmat[site].reshape(3, 3)
            e_rot = 0.5 * (np.cross(rot[:, 0], target_rot[:, 0])
                           + np.cross(rot[:, 1], target_rot[:, 1])
                           + np.cross(rot[:, 2], target_rot[:, 2]))
            return np.concatenate([self.data.site_xpos[site] - pos, -w * e_rot,
                                   k * (x - rest[idx])])

        def jacobian(x: np.ndarray) -> np.ndarray:
            q[idx] = x
            self._set(q)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, site)
            return np.vstack([self._jacp[:, dofs], w * self._jacr[:, dofs], k * np.eye(n)])

        starts = [np.asarray(seed, float)[idx]]
        if restarts:
            rng = np.random.default_rng(0)  # fixed: the expert stays deterministic
            starts.append(self.rest[idx])
            starts += [rng.uniform(lo, hi) for _ in range(restarts)]
        results = []
        for x0 in starts:
            res = least_squares(residual, np.clip(x0, lo + 1e-6, hi - 1e-6), jac=jacobian,
                                bounds=(lo, hi), xtol=1e-10, ftol=1e-10, gtol=1e-10,
                                max_nfev=200)
            err = float(np.linalg.norm(res.fun[:3]))
            rot_err = float(np.linalg.norm(res.fun[3:6])) / w
            reached = err < 1e-3 and rot_err < 0.02
            # reached first, then nearest to the seed; otherwise the smallest error
            results.append((not reached, float(np.abs(res.x - starts[0]).sum()) if reached
                            else err + 0.05 * rot_err, len(results), res))
        best = min(results, key=lambda r: r[:3])[3]
        q = np.array(seed, dtype=np.float64)
        q[idx] = best.x
        return q, float(np.linalg.norm(best.fun[:3]))


# ---- plans ----------------------------------------------------------------------------------
@dataclass
class ArmState:
    q: np.ndarray  # (D,) joints of the whole robot; only this arm's entries are meaningful
    pos: np.ndarray  # TCP position
    yaw: float
    grip: float  # action units


@dataclass
class Plan:
    actions: np.ndarray  # (T, D) action layout, grippers normalised
    phases: list[str] = field(default_factory=list)  # (T,) the expert's phase per action
    max_ik_error: float = 0.0  # m, worst TCP error of any Cartesian frame


class PlanBuilder:
    """Accumulates segments into a (T, D) action array at the robot's action rate, starting
    from the home pose or from `start` (joint positions (D,), grippers included: a recovery
    from wherever a policy left the robot)."""

    def __init__(self, scene: Scene, ik: ArmIK, start: np.ndarray | None = None) -> None:
        self.scene = scene
        self.robot = scene.robot
        self.ik = ik
        self.dt = self.robot.action_dt
        self.vmax = self.robot.limits_array("velocity") * VELOCITY_MARGIN
        q0 = self.robot.home_vector() if start is None else np.asarray(start, dtype=np.float64)
        if q0.shape != (self.robot.action_dim,) or not np.all(np.isfinite(q0)):
            raise ValueError(f"start: need {self.robot.action_dim} finite joint positions, got "
                             f"shape {q0.shape}")
        self.q = q0.copy()  # joint units, the whole robot
        self.arms: dict[str, ArmState] = {}
        for arm in scene.tcp_site:
            pos, rot = ik.tcp(q0, arm)
            grip = float(self.robot.joint_to_action(q0)[scene.gripper_of_arm[arm]])
            self.arms[arm] = ArmState(q0.copy(), pos, float(np.arctan2(rot[1, 0], rot[0, 0])),
                                      grip)
        self.actions: list[np.ndarray] = []
        self.phases: list[str] = []
        self.max_ik_error = 0.0

    def _action(self) -> np.ndarray:
        a = self.robot.joint_to_action(self.q)
        for arm, st in self.arms.items():
            a[self.scene.gripper_of_arm[arm]] = st.grip
        return a

    def segment(self, phase: str, moves: dict[str, tuple], min_duration: float = 0.3) -> None:
        """One segment, all arms together. moves: arm -> one of
            ("cart", pos, yaw)     straight TCP line, yaw interpolated
            ("joint", q)           joint-space move of that arm to q (D,) (its entries)
            ("grip", value)        gripper ramp, arm holds still
            ("home",)              joint-space move of that arm back to the home pose
        """
        n_min = max(1, int(np.ceil(min_duration / self.dt)))
        duration = min_duration
        for arm, move in moves.items():
            st = self.arms[arm]
            if move[0] == "cart":
                dist = float(np.linalg.norm(np.asarray(move[1]) - st.pos))
                dyaw = abs(move[2] - st.yaw)
                duration = max(duration, MIN_JERK_PEAK * dist / CART_SPEED,
                               MIN_JERK_PEAK * dyaw / YAW_SPEED)
            elif move[0] in ("joint", "home"):
                goal = self.robot.home_vector() if move[0] == "home" else np.asarray(move[1])
                idx = self.scene.arm_index[arm]
                duration = max(duration, MIN_JERK_PEAK * float(
                    (np.abs(goal[idx] - self.q[idx]) / self.vmax[idx]).max()))
            elif move[0] == "grip":
                g = self.scene.gripper_of_arm[arm]
                gripper = self.robot.grippers[self.robot.action_layout[g]]
                rate = self.vmax[g] / abs(gripper.open - gripper.closed)  # normalised / s
                duration = max(duration, abs(move[1] - st.grip) / rate)  # linear ramp
        for _ in range(4):  # stretch until the joint velocities fit
            n = max(n_min, int(np.ceil(duration / self.dt)))
            frames, ik_err = self._sample(moves, n)
            steps = np.abs(np.diff(np.vstack([self.q, frames]), axis=0)) / self.dt
            ratio = float((steps / self.vmax).max())
            if ratio <= 1.0:
                break
            if ratio > MAX_STRETCH or ik_err > 2e-3:
                raise PlanningError(f"{phase}: no smooth IK path (joint speed x{ratio:.1f} "
                                    f"over the limit, TCP error {ik_err * 1000:.1f} mm)")
            duration = n * self.dt * ratio * 1.05
        else:
            raise PlanningError(f"{phase}: joint speeds still over the limit")
        self.max_ik_error = max(self.max_ik_error, ik_err)
        grips = {arm: self.arms[arm].grip for arm in self.arms}
        for k, q in enumerate(frames):
            self.q = q
            s = (k + 1) / n
            for arm, move in moves.items():
                if move[0] == "grip":
                    self.arms[arm].grip = grips[arm] + s * (move[1] - grips[arm])
            self.actions.append(self._action())
            self.phases.append(phase)
        for arm, move in moves.items():
            st = self.arms[arm]
            if move[0] in ("cart", "joint", "home"):
                st.q = self.q.copy()
                st.pos, rot = self.ik.tcp(self.q, arm)
                st.yaw = move[2] if move[0] == "cart" else float(np.arctan2(rot[1, 0], rot[0, 0]))

    def _sample(self, moves: dict[str, tuple], n: int) -> tuple[np.ndarray, float]:
        frames = np.repeat(self.q[None, :], n, axis=0)
        ik_err = 0.0
        s_all = min_jerk(np.arange(1, n + 1) / n)
        for arm, move in moves.items():
            st = self.arms[arm]
            idx = self.scene.arm_index[arm]
            if move[0] == "cart":
                q = self.q.copy()
                goal = np.asarray(move[1], float)
                for k, s in enumerate(s_all):
                    pos, yaw = st.pos + s * (goal - st.pos), st.yaw + s * (move[2] - st.yaw)
                    # posture pull towards the previous frame: the smallest joint motion, no
                    # jumps along a redundant arm's null space
                    q, err = self.ik.solve(arm, pos, yaw, q, rest=q)
                    if err > 1e-3:  # lost the path (a joint limit): search more widely
                        q, err = self.ik.solve(arm, pos, yaw, q, restarts=6)
                    ik_err = max(ik_err, err)
                    frames[k, idx] = q[idx]
            elif move[0] in ("joint", "home"):
                goal = self.robot.home_vector() if move[0] == "home" else np.asarray(move[1])
                frames[:, idx] = self.q[idx] + s_all[:, None] * (goal[idx] - self.q[idx])
        return frames, ik_err

    def hold(self, phase: str, duration: float) -> None:
        for _ in range(round(duration / self.dt)):
            self.actions.append(self._action())
            self.phases.append(phase)

    def build(self) -> Plan:
        return Plan(np.array(self.actions), list(self.phases), self.max_ik_error)


class ScriptedExpert:
    """Base class. `plan(poses)` plans an episode from the objects' poses; `reset()` plans
    from the simulator's present ones (`execute_plan` runs a plan)."""

    task: ClassVar[str] = ""
    rise_height = 0.12  # m above the table: TCP height an arm leaves home to

    def __init__(self, sim: Simulator) -> None:
        if sim.task.name != self.task:
            raise ValueError(f"{type(self).__name__} solves {self.task!r}, the simulator runs "
                             f"{sim.task.name!r}")
        self.sim = sim
        self.scene = sim.scene
        self.ik = ArmIK(sim.scene, tilt=GRASP_TILT.get((sim.robot.name, self.task), 0.0))
        self.table_top = sim.scene.layout.table_top

    def plan(self, poses: dict[str, np.ndarray], start: np.ndarray | None = None) -> Plan:
        """The episode's plan from the objects' poses: from home, or with `start` (joint
        positions) a recovery from that state (pick-and-place only)."""
        raise NotImplementedError

    def reset(self) -> Plan:
        return self.plan(self.sim.object_poses())

    def _leave_home(self, b: PlanBuilder, yaws: dict[str, float]) -> None:
        """Arms whose home pose hangs low over the table (CobotMagic's does, 3 cm) rise
        straight up first, turning to their grasp yaw, so the move out cannot sweep an
        object off the table."""
        moves = {}
        for arm, yaw in yaws.items():
            pos = b.arms[arm].pos
            if pos[2] < self.table_top + self.rise_height:
                moves[arm] = ("joint", self._ik(arm, [pos[0], pos[1],
                                                      self.table_top + self.rise_height],
                                                yaw, b.q))
        if moves:
            b.segment("approach", moves)

    def _ik(self, arm: str, pos, yaw: float, seed: np.ndarray) -> np.ndarray:
        q, _ = self.ik.solve(arm, np.asarray(pos, float), yaw, seed, restarts=6)
        return q


class PickPlaceExpert(ScriptedExpert):
    """The right arm picks the cube (top-down, yaw matched to the cube), drops it into the bin
    from above its rim, returns home."""

    task = "pick_place"
    arm = "right"
    approach_height = 0.10  # pre-grasp: back from the cube centre along the gripper's axis
    carry_height = 0.12  # TCP above the table while carrying (cube 4 cm over the bin rim)

    recovery_clearance = 0.06  # m: a recovering TCP lower than this over the cube rises first

    def plan(self, poses: dict[str, np.ndarray], start: np.ndarray | None = None,
             pregrasp_error: np.ndarray | None = None,
             grasp_error: np.ndarray | None = None,
             pregrasp_distance: float | None = None) -> Plan:
        """`pregrasp_error` (dx, dy, dz m, dyaw rad): the hand goes to a pre-grasp pose that
        much off, and the descent corrects it on its way to the true grasp (disturbed
        episodes: what to do when the cube is not where a perfect approach puts it). With
        `pregrasp_distance` (m along the gripper's axis, below `approach_height`), the hand
        first reaches the true pre-grasp, then moves on to the erroneous pose that close to the
        cube; the descent then first moves it back over the cube at that distance (a slanted
        descent from there would run a finger into the cube), then down.
        `grasp_error` (dx, dy, dz m): approach, descent and grasp all aim that far from the
        cube, so the gripper closes beside or above it (missed-grasp episodes)."""
        cube, bin_pos = poses["cube"], poses["bin"]
        b = PlanBuilder(self.scene, self.ik, start)
        arm, top = self.arm, self.table_top
        x, y, z, yaw = cube
        grasp_at = [x, y, z]
        err = np.zeros(4) if pregrasp_error is None else np.asarray(pregrasp_error, float)
        if err.shape != (4,) or not np.all(np.isfinite(err)):
            raise ValueError(f"pregrasp_error: need 4 finite values (dx, dy, dz, dyaw), got "
                             f"{pregrasp_error!r}")
        if grasp_error is not None:
            miss = np.asarray(grasp_error, float)
            if miss.shape != (3,) or not np.all(np.isfinite(miss)):
                raise ValueError(f"grasp_error: need 3 finite values (dx, dy, dz), got "
                                 f"{grasp_error!r}")
            grasp_at = list(np.asarray(grasp_at) + miss)
        if pregrasp_distance is not None:
            if not 0.0 < pregrasp_distance < self.approach_height:
                raise ValueError(f"pregrasp_distance: got {pregrasp_distance}; allowed: 0 .. "
                                 f"{self.approach_height} m (exclusive)")
            late, err = err, np.zeros(4)  # the approach is the true one; the error comes after
        align = (self.sim.robot.name, self.task) in ALIGN_ABOVE
        reach_yaw = 0.0 if align else yaw + err[3]
        tilt = self.ik.tilt
        look = LOOK_DISTANCE.get((self.sim.robot.name, self.task))
        if start is None:
            self._leave_home(b, {arm: reach_yaw})
        else:
            self._recover(b, z)
            look = None  # the cube is where the policy brought the hand camera
        if look is not None:
            region = self.sim.task.workspace.pick
            centre = [float(np.mean(region.x)), float(np.mean(region.y)), z]
            b.segment("approach", {arm: ("joint", self._ik(
                arm, pre_grasp(centre, reach_yaw, tilt, look), reach_yaw, b.q))})
        b.segment("approach", {arm: ("joint", self._ik(
            arm, pre_grasp(grasp_at, reach_yaw, tilt, self.approach_height) + err[:3],
            reach_yaw, b.q))})
        if align:
            b.segment("approach", {arm: ("cart", pre_grasp(grasp_at, yaw, tilt,
                                                           self.approach_height) + err[:3],
                                         yaw + err[3])})
        if pregrasp_distance is not None:  # off that close, then back over the cube first
            near = pre_grasp(grasp_at, yaw, tilt, pregrasp_distance)
            b.segment("approach", {arm: ("cart", near + late[:3], yaw + late[3])})
            b.segment("descend", {arm: ("cart", near, yaw)})
        b.segment("descend", {arm: ("cart", grasp_at, yaw)})
        b.segment("grasp", {arm: ("grip", CLOSED)})
        b.hold("grasp", 0.2)
        b.segment("lift", {arm: ("cart", [x, y, top + self.carry_height], yaw)})
        b.segment("carry", {arm: ("cart", [bin_pos[0], bin_pos[1], top + self.carry_height],
                                  yaw)})
        b.segment("release", {arm: ("grip", OPEN)})
        b.hold("release", 0.1)
        b.segment("retreat", {arm: ("home",)})
        b.hold("done", 0.4)
        return b.build()

    def _recover(self, b: PlanBuilder, cube_z: float) -> None:
        """From a policy's state, before the approach: a hand low over the table rises
        straight up (a joint move to the point above it, small enough to stay nearly straight)
        so the move to the pre-grasp cannot sweep the cube, and an unopened gripper opens."""
        st = b.arms[self.arm]
        if st.pos[2] < cube_z + self.recovery_clearance:
            up = [st.pos[0], st.pos[1], cube_z + self.recovery_clearance + 0.02]
            b.segment("approach", {self.arm: ("joint", self._ik(self.arm, up, st.yaw, b.q))})
        if st.grip < OPEN - 0.05:
            b.segment("approach", {self.arm: ("grip", OPEN)})


class HandoverExpert(ScriptedExpert):
    """Right arm takes the bar by its right end, offers it in the middle with the bar along y;
    the left arm (waiting above) takes the left end, the right lets go and goes home; the left
    puts the bar on the target, lets go and lifts off."""

    task = "handover"
    grip_offset = 0.045  # m: each gripper holds the bar this far from its centre
    approach_height = 0.08

    def plan(self, poses: dict[str, np.ndarray], start: np.ndarray | None = None) -> Plan:
        if start is not None:
            raise PlanningError("handover: no recovery plan from a policy's state (the bar may "
                                "be in either hand); pick_place has one")
        bar, target = poses["bar"], poses["target"]
        top = self.table_top
        b = PlanBuilder(self.scene, self.ik)
        x, y, z, yaw = bar
        # right end of the bar (its local -y), gripper across the bar
        end = np.array([x, y, z]) + self.grip_offset * np.array([np.sin(yaw), -np.cos(yaw), 0])
        r_yaw, l_yaw = yaw - np.pi / 2, np.pi / 2
        hx, hy, hz = self.sim.task.workspace.handover
        centre = np.array([hx, hy, top + hz])
        r_hand = shifted(centre, 0.0, -self.grip_offset, 0.0)
        l_hand = shifted(centre, 0.0, self.grip_offset, 0.0)
        l_above = shifted(l_hand, 0, 0, self.approach_height)
        # the left arm waits above the meeting point while the right one picks
        self._leave_home(b, {"right": r_yaw, "left": l_yaw})
        b.segment("approach", {
            "right": ("joint", self._ik("right", shifted(end, 0, 0, self.approach_height), r_yaw,
                                        b.q)),
            "left": ("joint", self._ik("left", l_above, l_yaw, b.q))})
        b.segment("descend", {"right": ("cart", end, r_yaw)})
        b.segment("grasp", {"right": ("grip", CLOSED)})
        b.hold("grasp", 0.2)
        b.segment("lift", {"right": ("cart", shifted(end, 0, 0, 0.08), r_yaw)})
        b.segment("offer", {"right": ("cart", r_hand, -np.pi / 2)})
        b.segment("take", {"left": ("cart", l_hand, l_yaw)})
        b.segment("take", {"left": ("grip", CLOSED)})
        b.hold("take", 0.2)
        b.segment("let_go", {"right": ("grip", OPEN)})
        place = np.array([target[0], target[1] + self.grip_offset,
                          top + self.sim.scene.free["bar"].half[2] + 0.003])
        # the right arm backs off while the left one carries, and goes home while it places
        b.segment("carry", {"right": ("cart", shifted(r_hand, 0, -0.03, 0.06), -np.pi / 2),
                            "left": ("cart", shifted(place, 0, 0, 0.06), l_yaw)})
        b.segment("place", {"right": ("home",), "left": ("cart", place, l_yaw)})
        b.segment("release", {"left": ("grip", OPEN)})
        b.hold("release", 0.1)
        # ends with the left gripper just above the placed bar: going home as well would add
        # 2 s to an already long episode
        b.segment("retreat", {"left": ("cart", shifted(place, 0, 0, 0.06), l_yaw)})
        b.hold("done", 0.4)
        return b.build()


EXPERTS: dict[str, type[ScriptedExpert]] = {e.task: e for e in (PickPlaceExpert,
                                                                 HandoverExpert)}


def make_expert(sim: Simulator) -> ScriptedExpert:
    if sim.task.name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {sim.task.name!r}; allowed: "
                         f"{', '.join(EXPERTS)}")
    return EXPERTS[sim.task.name](sim)


class ExpertOperator:
    """A teleop operator (`data.teleop.Operator`) that performs a scripted expert's plan: the
    simulated operator of `wam-ros record --sim mujoco --teleop expert`.

    `reset(state, seed)` starts a new episode through `new_episode(seed)`, which resets the
    simulator (objects from `seed`; None = the next seed) and returns the object poses right
    after the reset, and plans from them; a scene the expert cannot plan for is replaced by the
    next seed's (up to `attempts` scenes). `reset(state)` without a seed plans only if nothing
    was planned yet (the teleop node calls it at its first tick). Thread-safe: the teleop
    node's timer and an episode controller may reset at once. `action(t, state)` is the plan's
    action at episode time t, its last one once the plan is done."""

    def __init__(self, expert: ScriptedExpert,
                 new_episode: Callable[[int | None], dict[str, np.ndarray]],
                 attempts: int = 5) -> None:
        self.expert = expert
        self.new_episode = new_episode
        self.attempts = attempts
        self.dt = expert.sim.robot.action_dt
        self.plan_: Plan | None = None
        self.skipped: list[str] = []  # why scenes were replaced
        self._lock = threading.Lock()

    def reset(self, follower_state: np.ndarray | None = None, seed: int | None = None) -> None:
        with self._lock:
            if seed is None and self.plan_ is not None:
                return
            self.plan_ = None
            for attempt in range(self.attempts):
                poses = self.new_episode(seed if attempt == 0 else None)
                try:
                    self.plan_ = self.expert.plan(poses)
                    return
                except PlanningError as exc:
                    self.skipped.append(str(exc))
            raise PlanningError(f"no plan in {self.attempts} scenes; last: {self.skipped[-1]}")

    def action(self, t: float, follower_state: np.ndarray | None) -> np.ndarray:
        if self.plan_ is None:
            self.reset(follower_state)
        actions = self.plan_.actions
        return actions[min(max(round(t / self.dt), 0), len(actions) - 1)]


@dataclass
class Rollout:
    success: bool
    steps: int
    seconds: float  # sim time
    phase: str  # the task's phase at the end
    plan: Plan


def run_expert(sim: Simulator, expert: ScriptedExpert | None = None, seed: int | None = None,
               on_step=None) -> Rollout:
    """Reset (with `seed`), plan, execute every action at the action rate; `on_step(sim,
    action)` is called before each action is applied (record observations there)."""
    sim.reset(seed)
    expert = expert or make_expert(sim)
    plan = expert.reset()
    status = execute_plan(sim, plan, on_step)
    return Rollout(status.success, len(plan.actions), sim.elapsed, status.phase, plan)


def execute_plan(sim: Simulator, plan: Plan, on_step=None):
    """Command every action of `plan` at the action rate from the simulator's present state;
    `on_step(sim, action)` before each. Returns the simulator's status at the end."""
    dt = sim.robot.action_dt
    for action in plan.actions:
        if on_step is not None:
            on_step(sim, action)
        sim.command_action(action)
        sim.step(dt)
    return sim.status()


__all__ = ["EXPERTS", "ArmIK", "HandoverExpert", "PickPlaceExpert", "Plan", "PlanBuilder",
           "PlanningError", "Rollout", "ScriptedExpert", "execute_plan", "make_expert", "min_jerk",
           "run_expert"]
