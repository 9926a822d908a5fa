"""ROS-free MuJoCo simulator: a robot, a task, mock ros2_control controllers, cameras.

    sim = Simulator("cobot_magic", "pick_place", seed=0)
    sim.command_action(action)          # (D,) action layout, grippers 0 closed .. 1 open
    sim.step(sim.robot.action_dt)       # physics at 500 Hz underneath
    q = sim.joint_positions()           # (D,) joint units (rad / m), action layout
    images = sim.render(width=96, height=96)   # camera -> (H, W, 3) uint8 RGB
    sim.status().success

Commands go through the same mock controllers as the kinematic fake robot
(`wam_ros.sim.controllers`: joint_trajectory_controller / forward_command_controller semantics,
times in sim seconds), so the sim node and the fake robot answer a topic identically. Each
physics step the controllers' goal (clamped to the joint limits) becomes the target of a
position servo per joint, plus a velocity feed-forward (kv/kp * goal velocity) that removes
the servo's following lag, as real joint drives do.

Thread safety: commands (`command_*`) may come from any thread; everything else (stepping,
rendering, reset) belongs to one thread, the one that created the renderers.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import NamedTuple

import mujoco
import numpy as np

from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Observation
from wam_ros.sim.controllers import ForwardController, TrajectoryController
from wam_ros.sim.scene import Scene
from wam_ros.sim.tasks import Task, task_class

TASK_UPDATE_DT = 0.01  # s: milestones and contacts checked at 100 Hz
PERIOD_SMOOTHING = 0.2  # weight of the newest gap in a forward stream's period


class _ForwardStream(NamedTuple):
    """A forward controller's command stream, for its velocity feed-forward."""

    time: float  # sim time of the newest command
    rate: np.ndarray | None  # setpoint change per second (None: no feed-forward yet)
    period: float | None  # running mean of the gaps between commands

    def feed_forward(self, t: float) -> np.ndarray | None:
        """The velocity to feed forward at sim time t: the rate, for two periods."""
        if self.rate is None or t >= self.time + 2.0 * self.period:
            return None
        return self.rate


@dataclass(frozen=True)
class SimStatus:
    episode: int
    seed: int
    task: str
    instruction: str
    phase: str
    success: bool
    elapsed: float  # sim seconds since reset
    held_by: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["held_by"] = list(self.held_by)
        return out


class Simulator:
    def __init__(self, robot: str | RobotSpec = "cobot_magic", task: str = "pick_place",
                 seed: int = 0) -> None:
        spec = RobotSpec.load(robot) if isinstance(robot, str) else robot
        cls = task_class(task)
        self.scene = Scene(spec, cls.objects)
        self.robot = self.scene.robot
        self.model = self.scene.model
        self.data = mujoco.MjData(self.model)
        self.task: Task = cls(self.scene)
        self.dt = float(self.model.opt.timestep)
        self._ff = self.scene.feedforward_gain()
        self._lower = self.robot.limits_array("lower")
        self._upper = self.robot.limits_array("upper")
        self._vmax = self.robot.limits_array("velocity") * 1.5
        self._lock = threading.Lock()
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.controllers: dict[str, TrajectoryController | ForwardController] = {}
        self._ctrl_index: dict[str, np.ndarray] = {}
        self._forward: dict[str, _ForwardStream] = {}  # forward controllers' streams
        self.episode = -1
        self.seed = int(seed)
        self._next_seed = int(seed)
        self._t0 = 0.0
        self._last_task_update = -np.inf
        self.reset(seed)

    # ---- episodes ------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> SimStatus:
        """New episode: robot at home, objects randomised from `seed` (default: the next one).

        Sim time keeps running across episodes (it is the ROS clock in the sim node)."""
        self.seed = self._next_seed if seed is None else int(seed)
        self._next_seed = self.seed + 1
        self.episode += 1
        now = float(self.data.time)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.time = now
        home = self.robot.home_vector()
        d.qpos[self.scene.joint_qpos] = home
        for eq in range(m.neq):  # mimic fingers start where their leader is
            if m.eq_type[eq] == mujoco.mjtEq.mjEQ_JOINT:
                j1, j2 = m.eq_obj1id[eq], m.eq_obj2id[eq]
                c0, c1 = m.eq_data[eq, 0], m.eq_data[eq, 1]
                d.qpos[m.jnt_qposadr[j1]] = c0 + c1 * d.qpos[m.jnt_qposadr[j2]]
        self.task.reset(np.random.default_rng(self.seed), m, d)
        with self._lock:
            self._make_controllers(home)
        d.ctrl[self.scene.actuators] = home
        mujoco.mj_forward(m, d)
        self._t0 = now
        self._last_task_update = -np.inf
        self.task.update(m, d)
        return self.status()

    def _make_controllers(self, home: np.ndarray) -> None:
        layout = self.robot.action_layout
        self.controllers.clear()
        self._forward.clear()
        for c in self.robot.controllers:
            idx = np.array([layout.index(j) for j in c.joints])
            cls = TrajectoryController if c.type == "joint_trajectory" else ForwardController
            self.controllers[c.name] = cls(c.joints, home[idx])
            self._ctrl_index[c.name] = idx

    # ---- commands (any thread) -----------------------------------------------------------
    def command_trajectory(self, controller: str, joint_names: list[str], start: float,
                           times: np.ndarray, positions: np.ndarray,
                           velocities: np.ndarray | None = None) -> None:
        """A JointTrajectory for a joint_trajectory controller (start 0 = now; sim seconds).
        Raises ControllerError for a trajectory the real controller would reject."""
        with self._lock:
            ctrl = self.controllers[controller]
            if not isinstance(ctrl, TrajectoryController):
                raise TypeError(f"{controller} is a forward_command controller")
            ctrl.command(joint_names, start, times, positions, velocities, float(self.data.time))

    def command_forward(self, controller: str, values: np.ndarray | list[float]) -> None:
        """A Float64MultiArray for a forward_command controller (joint units)."""
        with self._lock:
            ctrl = self.controllers[controller]
            if not isinstance(ctrl, ForwardController):
                raise TypeError(f"{controller} is a joint_trajectory controller")
            now = float(self.data.time)
            previous = ctrl.goal(now)
            ctrl.command(values)
            # the drive's velocity feed-forward, while the stream lasts: the setpoint's change
            # over the stream's period, a running average of the gaps between commands. The
            # gap of each single command turned transport jitter into velocity spikes:
            # through the G1 graph a subscriber saw 4-28 ms of sim time between commands
            # (1st-99th percentile, median 12 ms) sent every 10 ms. A regular stream (the
            # runtime rollouts, the experts) gets exactly its own period, as before.
            last = self._forward.get(controller)
            gap = now - last.time if last is not None else np.inf
            if gap < 0.25 and (last.period is not None or gap > 0.0):
                period = gap if last.period is None else (
                    (1.0 - PERIOD_SMOOTHING) * last.period + PERIOD_SMOOTHING * gap)
                rate = (np.asarray(values, float) - previous) / max(period, 1e-3)
                self._forward[controller] = _ForwardStream(now, rate, period)
            else:  # a stream (re)starts: no rate until the next command
                self._forward[controller] = _ForwardStream(now, None, None)

    def command_joints(self, positions: np.ndarray, duration: float | None = None) -> None:
        """(D,) joint positions (joint units, action layout) to every controller: trajectory
        controllers get one point `duration` ahead (default the robot's trajectory lead), as
        the smoother and teleop nodes send them; forward controllers take the positions as
        they are."""
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (self.robot.action_dim,):
            raise ValueError(f"expected ({self.robot.action_dim},) positions, got "
                             f"{positions.shape}")
        duration = self.robot.trajectory_lead_s if duration is None else duration
        for c in self.robot.controllers:
            values = positions[self._ctrl_index[c.name]]
            if c.type == "joint_trajectory":
                self.command_trajectory(c.name, list(c.joints), 0.0, np.array([duration]),
                                        values[None, :])
            else:
                self.command_forward(c.name, values)

    def command_action(self, action: np.ndarray, duration: float | None = None) -> None:
        """(D,) action in action-layout units (grippers 0 closed .. 1 open)."""
        self.command_joints(self.robot.action_to_joint(np.asarray(action)), duration)

    # ---- physics (one thread) -------------------------------------------------------------
    def goal(self, t: float | None = None) -> np.ndarray:
        """(D,) the controllers' goal at sim time t (default now), joint units."""
        t = float(self.data.time) if t is None else t
        out = np.empty(self.robot.action_dim)
        with self._lock:
            for name, ctrl in self.controllers.items():
                out[self._ctrl_index[name]] = ctrl.goal(t)
        return out

    def _goal_velocity(self, t: float, goal: np.ndarray) -> np.ndarray:
        vel = np.zeros_like(goal)
        with self._lock:
            for name, ctrl in self.controllers.items():
                idx = self._ctrl_index[name]
                if isinstance(ctrl, TrajectoryController):
                    vel[idx] = (ctrl.goal(t + self.dt) - goal[idx]) / self.dt
                else:
                    stream = self._forward.get(name)
                    rate = stream.feed_forward(t) if stream is not None else None
                    if rate is not None:
                        vel[idx] = rate
        return np.clip(vel, -self._vmax, self._vmax)

    def step(self, duration: float) -> None:
        """Advance the physics by `duration` sim seconds (rounded to whole physics steps)."""
        m, d = self.model, self.data
        for _ in range(max(1, round(duration / self.dt))):
            t = float(d.time)
            goal = np.clip(self.goal(t), self._lower, self._upper)
            target = goal + self._ff * self._goal_velocity(t, goal)
            target[self.scene.gripper_index] = goal[self.scene.gripper_index]
            d.ctrl[self.scene.actuators] = target
            mujoco.mj_step(m, d)
            if d.time - self._last_task_update >= TASK_UPDATE_DT - 1e-9:
                self.task.update(m, d)
                self._last_task_update = float(d.time)

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def elapsed(self) -> float:
        return float(self.data.time) - self._t0

    def joint_positions(self) -> np.ndarray:
        """(D,) measured joint positions, joint units, action layout."""
        return self.data.qpos[self.scene.joint_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.scene.joint_dof].copy()

    def state(self) -> np.ndarray:
        """(D,) measured positions in action units (grippers normalised 0..1)."""
        return self.robot.joint_to_action(self.joint_positions())

    def object_poses(self) -> dict[str, np.ndarray]:
        """The task's objects: name -> [x, y, z, yaw] in the world frame."""
        return self.task.observe(self.data)

    def status(self) -> SimStatus:
        info = self.task.info(self.model, self.data)
        return SimStatus(episode=self.episode, seed=self.seed, task=self.task.name,
                         instruction=self.task.instruction, phase=str(info["phase"]),
                         success=bool(info["success"]), elapsed=round(self.elapsed, 4),
                         held_by=tuple(info["held_by"]))

    # ---- cameras -------------------------------------------------------------------------
    def render(self, cameras: list[str] | tuple[str, ...] | None = None, width: int = 320,
               height: int = 240) -> dict[str, np.ndarray]:
        """camera name -> (height, width, 3) uint8 RGB (default: every camera of the robot)."""
        cameras = self.robot.camera_names if cameras is None else tuple(cameras)
        unknown = [c for c in cameras if c not in self.scene.camera_ids]
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; allowed: "
                             f"{', '.join(self.scene.camera_ids)}")
        renderer = self._renderers.get((height, width))
        if renderer is None:
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            self._renderers[(height, width)] = renderer
        out = {}
        for cam in cameras:
            renderer.update_scene(self.data, camera=cam)
            # shadows and reflections cost 3-4x on a software renderer and teach nothing
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            out[cam] = renderer.render().copy()
        return out

    def observation(self, width: int = 224, height: int = 224,
                    cameras: list[str] | tuple[str, ...] | None = None) -> Observation:
        """What a policy sees: every camera at the model's input size, joint positions (joint
        units), sim time and the task's instruction (`wam_ros.core.types.Observation`)."""
        return Observation(stamp=self.time, images=self.render(cameras, width, height),
                           joint_positions=self.joint_positions(), task=self.task.instruction)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SimStatus", "Simulator"]
