"""MuJoCo sim node: the simulated robot on sim time, a drop-in for the real one.

Publishes /clock (the simulator's time is authoritative: the rest of the graph runs with
use_sim_time), the robot's cameras (rendered at camera_width x camera_height, each at its
rate_hz in sim time, on JointState ticks), JointState at the robot's control rate, and the
task status (JSON on /wam/sim/status); follows the controller topics of `spec.controllers`
exactly like the kinematic fake robot; /wam/sim/reset (std_srvs/Trigger) starts a new episode
with the next seed.

Physics, rendering and publishing run in one thread of their own, paced to real_time_factor
(<= 0: as fast as possible); when the machine cannot keep up, sim time simply runs slower.
Command callbacks run on the executor and only hand goals to the (locked) mock controllers.

Graph-paced mode (max_command_age_s > 0, sim.pace): the simulator slows down while the
graph's newest command is older than that in sim time; the status reports the pace (`pace`).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wam_ros.core.config import ConfigError
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import run_nodes
from wam_ros.sim.controllers import ControllerError
from wam_ros.sim.pace import ADAPT_PERIOD, GraphPace

if TYPE_CHECKING:
    from wam_ros.sim.mujoco_sim import SimStatus

STATUS_PERIOD = 0.1  # s sim time between task status messages
RATE_WINDOW = 5.0  # s wall time over which the achieved real-time factor is measured


@dataclass
class _ResetRequest:
    """A new episode asked of the sim thread; it fills status and poses, then sets done."""

    seed: int | None
    done: threading.Event = field(default_factory=threading.Event)
    status: SimStatus | None = None
    poses: dict[str, np.ndarray] | None = None


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam_sim", **kwargs)
        os.environ.setdefault("MUJOCO_GL", "egl")
        robot = str(self.declare_parameter("robot", "cobot_magic").value)
        task = str(self.declare_parameter("task", "pick_place").value)
        seed = int(self.declare_parameter("seed", 0).value)
        # frames are rendered on the CPU: keep them small unless a model needs more
        self.width = int(self.declare_parameter("camera_width", 320).value)
        self.height = int(self.declare_parameter("camera_height", 240).value)
        self.rtf = float(self.declare_parameter("real_time_factor", 1.0).value)
        self.headless = bool(self.declare_parameter("headless", True).value)
        clock_rate = float(self.declare_parameter("clock_rate_hz", 250.0).value)
        self.pace = GraphPace(self.rtf, float(
            self.declare_parameter("max_command_age_s", 0.0).value))
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"camera_width/camera_height: got {self.width}x{self.height}; "
                              "allowed: positive sizes")
        if clock_rate <= 0:
            raise ConfigError(f"clock_rate_hz: got {clock_rate}; allowed: > 0")
        from wam_ros.sim.mujoco_sim import Simulator  # mujoco only when the node is made

        try:
            self.sim = Simulator(robot, task, seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.spec = self.sim.robot
        self.clock_dt = max(self.sim.dt, 1.0 / clock_rate)

        self.clock_pub = self.create_publisher(Clock, topics.CLOCK, topics.CLOCK_QOS)
        self.js_pub = self.create_publisher(JointState,
                                            topics.robot_topic(self.spec.joint_state_topic),
                                            topics.SENSOR_QOS)
        self.cam_pubs = [
            (c, self.create_publisher(CompressedImage if c.compressed else Image,
                                      topics.robot_topic(c.topic),
                                      topics.SENSOR_QOS))
            for c in self.spec.cameras]
        self.status_pub = self.create_publisher(String, topics.SIM_STATUS, 10)
        self.rejected = 0
        for c in self.spec.controllers:
            if c.type == "joint_trajectory":
                self.create_subscription(JointTrajectory, topics.robot_topic(c.topic),
                                         lambda m, n=c.name: self.on_trajectory(n, m),
                                         topics.COMMAND_QOS)
            else:
                self.create_subscription(Float64MultiArray, topics.robot_topic(c.topic),
                                         lambda m, n=c.name: self.on_forward(n, m),
                                         topics.COMMAND_QOS)
        # the reset waits for the sim thread; its own group keeps commands flowing meanwhile
        self.create_service(Trigger, topics.SIM_RESET, self.on_reset,
                            callback_group=ReentrantCallbackGroup())
        # the sim thread serves them in order, between two steps
        self._resets: queue.SimpleQueue[_ResetRequest] = queue.SimpleQueue()
        self.last_status = self.sim.status()  # the sim thread's newest, every STATUS_PERIOD
        self._stop = threading.Event()
        self.achieved_rtf = float("nan")
        self._thread = threading.Thread(target=self._run, name="wam_sim_physics", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{self.spec.name} / {task} seed {seed}: cameras {self.width}x{self.height}, "
            f"physics {1 / self.sim.dt:.0f} Hz, /clock every {self.clock_dt * 1000:.0f} ms, "
            f"real-time factor {self.rtf:g}"
            + (f", paced to the graph (commands at most {self.pace.max_age * 1e3:.0f} ms old)"
               if self.pace.enabled else ""))

    # ---- commands (executor threads) -------------------------------------------------------
    def on_trajectory(self, controller: str, msg: JointTrajectory) -> None:
        self.pace.on_command(self.sim.time)
        try:
            self.sim.command_trajectory(controller, *conversions.trajectory_arrays(msg))
        except (ControllerError, ValueError) as exc:
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: {exc}", once=True)

    def on_forward(self, controller: str, msg: Float64MultiArray) -> None:
        self.pace.on_command(self.sim.time)
        try:
            self.sim.command_forward(controller, list(msg.data))
        except ControllerError as exc:
            self.rejected += 1
            self.get_logger().warning(f"command rejected: {exc}", once=True)

    def reset_episode(self, seed: int | None = None, timeout: float = 10.0
                      ) -> tuple[SimStatus, dict[str, np.ndarray]] | None:
        """New episode (objects from `seed`, default the next one), done by the sim thread
        between two steps; returns its status and the object poses right after the reset, or
        None when the sim thread did not get to it within `timeout` seconds."""
        request = _ResetRequest(seed)
        self._resets.put(request)
        if not request.done.wait(timeout):
            return None
        return request.status, request.poses

    def on_reset(self, request: Trigger.Request, response: Trigger.Response
                 ) -> Trigger.Response:
        result = self.reset_episode()
        if result is None:
            response.success = False
            response.message = "the simulator did not reset within 10 s"
            return response
        status = result[0]
        response.success = True
        response.message = f"episode {status.episode}, seed {status.seed}"
        self.get_logger().info(f"reset: {response.message}")
        return response

    # ---- the sim thread ------------------------------------------------------------------
    def _run(self) -> None:
        sim = self.sim
        viewer = self._open_viewer() if not self.headless else None
        js_dt = 1.0 / self.spec.control_rate_hz
        cam_dt = [1.0 / c.rate_hz for c, _ in self.cam_pubs]
        next_js = next_status = sim.time
        next_cam = [sim.time] * len(self.cam_pubs)
        frames_on_js_ticks = min(cam_dt, default=js_dt) >= js_dt - 1e-9
        wall0, sim0 = time.monotonic(), sim.time
        window = (wall0, sim0)
        next_adapt = wall0 + ADAPT_PERIOD
        try:
            while not self._stop.is_set():
                while not self._resets.empty():
                    request = self._resets.get()
                    request.status = sim.reset(request.seed)
                    request.poses = sim.object_poses()
                    next_status = sim.time
                    request.done.set()
                sim.step(self.clock_dt)
                now = sim.time
                self.pace.on_step(now)
                self.clock_pub.publish(Clock(clock=conversions.to_time(now)))
                js_tick = now >= next_js - 1e-9
                if js_tick:
                    next_js = max(next_js + js_dt, now)
                    self._publish_joints(now)
                # frames on joint-state ticks (where the cameras are not faster): each has the
                # joints of its instant, which the observation node then need not wait for
                due = ([i for i, t in enumerate(next_cam) if now >= t - 1e-9]
                       if js_tick or not frames_on_js_ticks else [])
                if due:
                    self._publish_cameras(now, due)
                    for i in due:
                        next_cam[i] = max(next_cam[i] + cam_dt[i], now)
                if now >= next_status - 1e-9:
                    next_status = now + STATUS_PERIOD
                    self._publish_status()
                if viewer is not None:
                    viewer.sync()
                wall = time.monotonic()
                if wall - window[0] >= RATE_WINDOW:
                    self.achieved_rtf = (now - window[1]) / (wall - window[0])
                    window = (wall, now)
                if wall >= next_adapt:
                    next_adapt = wall + ADAPT_PERIOD
                    if self.pace.adapt():
                        wall0, sim0 = wall, now  # the new pace counts from here
                if self.rtf > 0:  # pace: never ahead of the wall clock, never catch up
                    ahead = wall0 + (now - sim0) / self.pace.pace - wall
                    if ahead > 0:
                        time.sleep(ahead)
                    elif ahead < -0.1:
                        wall0, sim0 = wall, now
        except Exception as exc:  # keep the reason in the log; the node stays up, frozen
            if self.context.ok():  # else: shut down under a publish (Ctrl-C), nothing to say
                self.get_logger().error(f"simulation stopped: {exc!r}")
        finally:
            if viewer is not None:
                viewer.close()
            sim.close()  # renderers belong to this thread's GL context

    def _open_viewer(self):
        try:
            import mujoco.viewer

            return mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
        except Exception as exc:  # no display, or an offscreen-only GL backend
            self.get_logger().warning(f"no interactive viewer ({exc}); running headless")
            return None

    def _publish_joints(self, now: float) -> None:
        names = list(self.spec.action_layout) + list(self.spec.fixed_joints)
        q = list(self.sim.joint_positions()) + list(self.spec.fixed_joints.values())
        v = list(self.sim.joint_velocities()) + [0.0] * len(self.spec.fixed_joints)
        self.js_pub.publish(conversions.make_joint_state(names, q, now, v))

    def _publish_cameras(self, now: float, which: list[int]) -> None:
        cams = [self.cam_pubs[i] for i in which]
        images = self.sim.render([c.name for c, _ in cams], self.width, self.height)
        for cam, pub in cams:
            if cam.compressed:
                msg = conversions.rgb_to_compressed(images[cam.name], now, cam.encoding)
                msg.header.frame_id = f"{cam.name}_optical_frame"
            else:  # raw encodings are published as rgb8 (the observation node reads any)
                msg = conversions.rgb_to_image(images[cam.name], now,
                                               f"{cam.name}_optical_frame")
            pub.publish(msg)

    def _publish_status(self) -> None:
        self.last_status = self.sim.status()
        status = self.last_status.as_dict()
        status["real_time_factor"] = (None if np.isnan(self.achieved_rtf)
                                      else round(self.achieved_rtf, 3))
        status["rejected_commands"] = self.rejected
        status["pace"] = round(self.pace.pace, 3) if self.rtf > 0 else None
        self.status_pub.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_nodes([SimNode], args)


if __name__ == "__main__":
    sys.exit(main())
