"""Kinematic fake robot: the hardware side of the graph without physics.

Publishes the robot's cameras (synthetic frames that change with the arm pose) and joint states,
and follows ros2_control commands through the mock controllers: the same topics and semantics
as the real robot, cheap enough for multi-process tests and pipeline benchmarks. The MuJoCo
simulator replaces it when physics and real rendering matter.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_ros.core.robot import RobotSpec
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import run_nodes, stamp_sec, unless_shut_down
from wam_ros.sim.controllers import ControllerError, ForwardController, TrajectoryController


class RobotJoints:
    """Joint state of a robot driven by mock controllers, velocity-limited like real motors."""

    def __init__(self, spec: RobotSpec) -> None:
        self.spec = spec
        self.names = spec.action_layout
        self.q = spec.home_vector()
        self.vmax = spec.limits_array("velocity") * 1.5  # motors are a bit faster than we ask
        self.controllers: dict[str, TrajectoryController | ForwardController] = {}
        self._index = {}
        for c in spec.controllers:
            init = np.array([spec.home[j] for j in c.joints])
            cls = TrajectoryController if c.type == "joint_trajectory" else ForwardController
            self.controllers[c.name] = cls(c.joints, init)
            self._index[c.name] = [self.names.index(j) for j in c.joints]

    def step(self, now: float, dt: float) -> None:
        goal = self.q.copy()
        for name, ctrl in self.controllers.items():
            goal[self._index[name]] = ctrl.goal(now)
        self.q += np.clip(goal - self.q, -self.vmax * dt, self.vmax * dt)


class FakeRobotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam_fake_robot", **kwargs)
        robot = self.declare_parameter("robot", "cobot_magic").value
        self.spec = RobotSpec.load(robot)
        scale = float(self.declare_parameter("camera_scale", 1.0).value)
        # explicit frame size (0 = the robot's camera size times camera_scale)
        width = int(self.declare_parameter("camera_width", 0).value)
        height = int(self.declare_parameter("camera_height", 0).value)
        self.joints = RobotJoints(self.spec)
        self.js_pub = self.create_publisher(JointState,
                                            topics.robot_topic(self.spec.joint_state_topic),
                                            topics.SENSOR_QOS)
        self.cam_pubs = [(c, self.create_publisher(Image, topics.robot_topic(c.topic),
                                                   topics.SENSOR_QOS))
                         for c in self.spec.cameras]
        self.size = [(height or max(8, int(c.height * scale)),
                      width or max(8, int(c.width * scale))) for c in self.spec.cameras]
        self.rejected = 0
        for c in self.spec.controllers:
            ctrl = self.joints.controllers[c.name]
            if c.type == "joint_trajectory":
                self.create_subscription(JointTrajectory, topics.robot_topic(c.topic),
                                         lambda m, ctrl=ctrl: self.on_trajectory(ctrl, m),
                                         topics.COMMAND_QOS)
            else:
                self.create_subscription(Float64MultiArray, topics.robot_topic(c.topic),
                                         lambda m, ctrl=ctrl: self.on_forward(ctrl, m),
                                         topics.COMMAND_QOS)
        self.period = 1.0 / self.spec.control_rate_hz
        self.last = stamp_sec(self)
        self.create_timer(self.period, unless_shut_down(self, self.tick))
        self.create_timer(1.0 / self.spec.cameras[0].rate_hz,
                          unless_shut_down(self, self.publish_cameras))
        # frames sent per camera, on /diagnostics once a second: a benchmark tells frames lost
        # on the way to the observation node from frames this robot never sent (its timer
        # falls behind on a loaded machine)
        self.frames_published = {c.name: 0 for c in self.spec.cameras}
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(1.0, unless_shut_down(self, self.publish_counts))

    def on_trajectory(self, ctrl: TrajectoryController, msg: JointTrajectory) -> None:
        try:
            ctrl.command(*conversions.trajectory_arrays(msg), stamp_sec(self))
        except (ControllerError, ValueError) as exc:
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: {exc}", once=True)

    def on_forward(self, ctrl: ForwardController, msg: Float64MultiArray) -> None:
        try:
            ctrl.command(msg.data)
        except ControllerError as exc:
            self.rejected += 1
            self.get_logger().warning(f"command rejected: {exc}", once=True)

    def tick(self) -> None:
        now = stamp_sec(self)
        self.joints.step(now, min(now - self.last, 5 * self.period))
        self.last = now
        names = list(self.joints.names) + list(self.spec.fixed_joints)
        q = list(self.joints.q) + list(self.spec.fixed_joints.values())
        self.js_pub.publish(conversions.make_joint_state(names, q, now))

    def publish_cameras(self) -> None:
        q = self.joints.q
        frames = [synthetic_frame(q, h, w, cam.name)
                  for (cam, _), (h, w) in zip(self.cam_pubs, self.size)]
        # the frames show the arm at one instant, and each is stamped with it, as a driver
        # stamps at exposure (before it is sent). Stamped one by one as they were sent, one
        # set's stamps spread by the others' rendering and sending: with 640x480 frames on a
        # loaded 2-core machine beyond the observation node's slop (20 ms), which then lost
        # sets that cameras running side by side would have delivered
        stamp = stamp_sec(self)
        for (cam, pub), frame in zip(self.cam_pubs, frames):
            # serialized here (conversions.rgb_to_cdr) and sent as is: rclpy's own conversion
            # copies the pixels twice more, CPU a camera driver in C++ does not spend
            pub.publish(conversions.rgb_to_cdr(frame, stamp, f"{cam.name}_optical_frame"))
            self.frames_published[cam.name] += 1

    def publish_counts(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status.append(DiagnosticStatus(
            level=DiagnosticStatus.OK, name="wam_ros/fake_robot", message="ok",
            hardware_id=self.get_name(),
            values=[KeyValue(key=f"published.{name}", value=str(n))
                    for name, n in self.frames_published.items()]))
        self.diag_pub.publish(msg)


def synthetic_frame(q: np.ndarray, h: int, w: int, seed_name: str) -> np.ndarray:
    """A frame whose content moves with the joints: one vertical bar per arm joint pair."""
    img = _background(h, w, seed_name).copy()
    for i in range(0, len(q), 2):
        x = int((np.sin(q[i]) * 0.45 + 0.5) * (w - 4))
        img[:, x:x + 4, i % 3] = 230
    return img


@functools.lru_cache(maxsize=16)
def _background(h: int, w: int, seed_name: str) -> np.ndarray:
    """A camera's plain background, made once: filling 640x480x3 with a colour takes ~5 ms,
    copying it 0.07 ms (three cameras at 30 Hz)."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (40 + (sum(map(ord, seed_name)) % 60), 60, 80)
    img.flags.writeable = False
    return img


def main(args: list[str] | None = None) -> int:
    return run_nodes([FakeRobotNode], args, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
