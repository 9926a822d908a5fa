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

The IK is sim/ik.py, the segments and plans sim/planning.py; running a plan in the simulator
(`run_expert`, `execute_plan`) or as a teleop operator (`ExpertOperator`) is
sim/expert_rollout.py.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from wam_ros.sim.ik import ArmIK
from wam_ros.sim.mujoco_sim import Simulator
from wam_ros.sim.planning import (
    CLOSED,
    OPEN,
    Plan,
    PlanBuilder,
    PlanningError,
    pre_grasp,
    shifted,
)

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


__all__ = ["EXPERTS", "HandoverExpert", "PickPlaceExpert", "ScriptedExpert", "make_expert"]
