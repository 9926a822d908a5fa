"""Inverse kinematics of one arm's TCP for the scripted experts (sim/experts.py): the gripper
orientation an expert grasps with (`grasp_rotation`: pointing down, optionally tilted, turned to
a yaw) and `ArmIK`, bounded damped least squares on the TCP site (`mj_jacSite`) on a private
MjData.
"""

from __future__ import annotations

import mujoco
import numpy as np
from scipy.optimize import least_squares

from wam_ros.sim.scene import Scene


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
