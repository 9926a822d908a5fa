"""Motion-planning primitives of the scripted experts (sim/experts.py): a plan is a sequence of
segments — joint-space moves, straight Cartesian moves of the TCP (IK frame by frame,
sim/ik.py), gripper ramps — each with a minimum-jerk time law, its duration stretched until
every joint stays under 85 % of the robot config's velocity limit at the action rate
(`PlanBuilder`); the result is a `Plan` of absolute actions in the robot's action layout
(grippers 0 closed .. 1 open), one per 1 / action_rate_hz. A segment without a smooth path
raises `PlanningError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wam_ros.sim.ik import ArmIK, grasp_rotation
from wam_ros.sim.scene import Scene

OPEN, CLOSED = 1.0, 0.0
VELOCITY_MARGIN = 0.85  # share of the config's joint velocity limit the expert plans with
CART_SPEED = 0.35  # m/s: peak TCP speed of Cartesian moves
YAW_SPEED = 2.0  # rad/s: peak wrist yaw rate of Cartesian moves
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

