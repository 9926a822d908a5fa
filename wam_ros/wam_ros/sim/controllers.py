"""Mock ros2_control controllers (pure Python; time passed in).

mock_components and the real controllers are C++ and not installable here, so the simulator
and the fake robot follow the same topic semantics with these classes:

* `TrajectoryController` — joint_trajectory_controller: a JointTrajectory replaces the current
  goal from its start time (header.stamp; zero = now); the segment from the current state to
  the first point is interpolated too, from the current goal and its velocity (as the real
  controller starts from its current desired state); positions only -> linear, positions +
  velocities -> cubic Hermite spline; joints missing from a message keep their goal
  (allow_partial_joints_goal); after the last point the goal holds.
* `ForwardController` — forward_command_controller (interface position): the newest command is
  the goal, held until the next one.
"""

from __future__ import annotations

import threading

import numpy as np


class ControllerError(ValueError):
    """A command the real controller would reject (named reason)."""


class TrajectoryController:
    def __init__(self, joints: tuple[str, ...] | list[str], initial: np.ndarray,
                 allow_partial_joints_goal: bool = True) -> None:
        self.joints = tuple(joints)
        self.allow_partial = allow_partial_joints_goal
        self._lock = threading.Lock()
        self._times = np.array([0.0])
        self._pos = np.asarray(initial, dtype=np.float64)[None, :].copy()
        self._vel: np.ndarray | None = None
        self.accepted = 0
        self.rejected = 0

    def command(self, joint_names: list[str], start: float, times: np.ndarray,
                positions: np.ndarray, velocities: np.ndarray | None, now: float) -> None:
        """Apply a JointTrajectory: times (N,) from start, positions/velocities (N, len(names))."""
        try:
            idx = self._indices(joint_names)
            times = np.asarray(times, dtype=np.float64)
            positions = np.asarray(positions, dtype=np.float64).reshape(len(times), -1)
            if len(times) == 0:
                raise ControllerError("trajectory has no points")
            if positions.shape[1] != len(joint_names):
                raise ControllerError(f"{positions.shape[1]} positions for {len(joint_names)} "
                                      "joints")
            if np.any(np.diff(times) <= 0):
                raise ControllerError("time_from_start must increase strictly")
            if not np.all(np.isfinite(positions)):
                raise ControllerError("non-finite positions")
        except ControllerError:
            self.rejected += 1
            raise
        start = now if start <= 0.0 else start
        with self._lock:
            current = self._sample(now)
            current_vel = self._sample_velocity(now)
            full = np.repeat(current[None, :], len(times), axis=0)
            full[:, idx] = positions  # joints not in the message keep their goal
            abs_times = start + times
            keep = abs_times > now
            if not np.any(keep):  # the whole trajectory is in the past: go to its end
                abs_times, full = np.array([now]), full[-1:]
                keep = np.array([True])
            knots_t = np.concatenate([[now], abs_times[keep]])
            knots_p = np.concatenate([current[None, :], full[keep]])
            if velocities is not None:
                vel = np.zeros_like(full)
                vel[:, idx] = np.asarray(velocities, dtype=np.float64).reshape(len(times), -1)
                self._vel = np.concatenate([current_vel[None, :], vel[keep]])
            else:
                self._vel = None
            self._times, self._pos = knots_t, knots_p
            self.accepted += 1

    def goal(self, now: float) -> np.ndarray:
        with self._lock:
            return self._sample(now)

    def _sample_velocity(self, t: float) -> np.ndarray:
        """The goal's velocity at t (zero outside the trajectory: the goal holds)."""
        times, pos = self._times, self._pos
        if t < times[0] or t >= times[-1]:
            return np.zeros(pos.shape[1])
        k = int(np.searchsorted(times, t, side="right")) - 1
        h = times[k + 1] - times[k]
        if self._vel is None:
            return (pos[k + 1] - pos[k]) / h
        s = (t - times[k]) / h
        d00, d10 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1
        d01, d11 = -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        return ((d00 * pos[k] + d01 * pos[k + 1]) / h + d10 * self._vel[k]
                + d11 * self._vel[k + 1])

    def _indices(self, joint_names: list[str]) -> list[int]:
        unknown = [j for j in joint_names if j not in self.joints]
        if unknown:
            raise ControllerError(f"unknown joints {unknown}; controller has {list(self.joints)}")
        if not self.allow_partial and set(joint_names) != set(self.joints):
            raise ControllerError("partial goals are not allowed")
        return [self.joints.index(j) for j in joint_names]

    def _sample(self, t: float) -> np.ndarray:
        times, pos = self._times, self._pos
        if t <= times[0]:
            return pos[0].copy()
        if t >= times[-1]:
            return pos[-1].copy()
        k = int(np.searchsorted(times, t, side="right")) - 1
        h = times[k + 1] - times[k]
        s = (t - times[k]) / h
        if self._vel is None:
            return (1 - s) * pos[k] + s * pos[k + 1]
        # cubic Hermite between (p0, v0) and (p1, v1)
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return (h00 * pos[k] + h10 * h * self._vel[k] + h01 * pos[k + 1]
                + h11 * h * self._vel[k + 1])


class ForwardController:
    def __init__(self, joints: tuple[str, ...] | list[str], initial: np.ndarray) -> None:
        self.joints = tuple(joints)
        self._goal = np.asarray(initial, dtype=np.float64).copy()
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0

    def command(self, data: list[float] | np.ndarray) -> None:
        data = np.asarray(data, dtype=np.float64)
        if data.shape != self._goal.shape or not np.all(np.isfinite(data)):
            self.rejected += 1
            raise ControllerError(
                f"expected {len(self.joints)} finite values, got {data.tolist()}")
        with self._lock:
            self._goal = data.copy()
            self.accepted += 1

    def goal(self, now: float) -> np.ndarray:  # same signature as trajectories
        with self._lock:
            return self._goal.copy()
