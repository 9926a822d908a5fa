"""Teleop node: an operator drives the leader arms, and (drive_follower) the follower follows.

Without hardware this stands in for the leader arms and the leader-follower coupling: at
`rate_hz` the operator (data.teleop: scripted, keyboard, or any `package.module:Factory`, e.g. a
simulator's scripted expert) turns the follower's joint state into an action; the node
publishes it on the robot config's teleop topics (CobotMagic: sensor_msgs/JointState on
/master/joint_left|right in the Piper convention; AgiBot G1: a JointTrajectory command topic)
and, like the real coupling, commands the follower through the robot's controller topics
(joint_trajectory_controller / forward_command_controller), each joint's step limited by its
velocity limit. Nothing is published before the first follower joint state, so the operator
starts from where the arms are.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.data.keys import TerminalKeys
from wam_ros.data.teleop import KeyboardOperator, LeaderMap, TeleopSettings, make_operator
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import run_nodes, stamp_sec
from wam_ros.nodes.params import declare_settings


class TeleopNode(Node):
    def __init__(self, operator: Any = None, **kwargs: Any) -> None:
        """`operator`: an operator object built by the caller (e.g. one holding a simulator in
        the same process); the `operator` parameter then only names it in the log."""
        super().__init__("wam_teleop", **kwargs)
        s = self.settings = declare_settings(self, TeleopSettings)
        self.robot = RobotSpec.load(s.robot)
        try:
            self.leaders = LeaderMap(self.robot)
            options: dict[str, Any] = {}
            if s.operator == "scripted":
                options = {"seed": s.seed, "amplitude": s.amplitude}
            elif s.operator == "keyboard":
                options = {"step": s.jog_step}
            self.operator = operator or make_operator(s.operator, self.robot, **options)
        except ValueError as exc:
            raise ConfigError(f"teleop: {exc}") from exc
        self.keys = TerminalKeys() if isinstance(self.operator, KeyboardOperator) else None
        if self.keys is not None:
            self.keys.open()
        self.period = 1.0 / s.rate_hz
        self.follower: np.ndarray | None = None  # action convention (grippers 0..1)
        self.command: np.ndarray | None = None  # last follower command, joint units
        self.t0: float | None = None
        self.published = 0
        self.step_limit = self.robot.limits_array("velocity") * self.period
        self.leader_pubs = {
            src.name: self.create_publisher(
                JointState if src.type == "joint_state" else JointTrajectory, src.topic,
                topics.SENSOR_QOS)
            for src in self.leaders.sources}
        self.controller_pubs = []
        if s.drive_follower:
            for c in self.robot.controllers:
                idx = [self.robot.action_layout.index(j) for j in c.joints]
                msg_type = conversions.controller_msg_type(c)
                self.controller_pubs.append(
                    (c, idx, self.create_publisher(msg_type, c.topic, topics.COMMAND_QOS)))
        self.create_subscription(JointState, self.robot.joint_state_topic, self.on_joints,
                                 topics.SENSOR_QOS)
        self.create_timer(self.period, self.tick)
        self.get_logger().info(
            f"{self.robot.name}: operator {s.operator} -> "
            f"{', '.join(src.topic for src in self.leaders.sources)} at {s.rate_hz:g} Hz"
            + (", driving the follower" if s.drive_follower else "")
            + (f"; keys: {KeyboardOperator.KEY_HELP}" if self.keys is not None else ""))

    def on_joints(self, msg: JointState) -> None:
        try:
            q = conversions.joint_positions(msg, self.robot.action_layout)
        except (KeyError, ValueError):
            return
        if np.all(np.isfinite(q)):
            self.follower = self.robot.joint_to_action(q)

    def tick(self) -> None:
        if self.follower is None:
            return
        now = stamp_sec(self)
        if self.t0 is None:
            self.t0 = now
            reset = getattr(self.operator, "reset", None)
            if reset is not None:
                reset(self.follower)
        t = now - self.t0
        if self.settings.duration_s > 0:
            t = min(t, self.settings.duration_s)
        if self.keys is not None:
            self.operator.feed(self.keys.pending())
        action = np.asarray(self.operator.action(t, self.follower), np.float64)
        if action.shape != (self.robot.action_dim,) or not np.all(np.isfinite(action)):
            self.get_logger().error(f"operator returned {action!r}; expected "
                                    f"({self.robot.action_dim},) finite values", once=True)
            return
        action = self.leaders.clip(action)
        self._publish_leaders(action, now)
        if self.controller_pubs:
            self._command_follower(self.robot.action_to_joint(action))
        self.published += 1

    def _publish_leaders(self, action: np.ndarray, now: float) -> None:
        values = self.leaders.to_messages(action, self.follower)
        for src in self.leaders.sources:
            v = values[src.name]
            if src.type == "joint_state":
                msg = conversions.make_joint_state(src.names, v, now)
            else:
                msg = conversions.trajectory_msg(src.names, np.asarray(v)[None, :],
                                                 stamp=conversions.to_time(now))
            self.leader_pubs[src.name].publish(msg)

    def _command_follower(self, target: np.ndarray) -> None:
        if self.command is None:
            self.command = self.robot.action_to_joint(self.follower)
        self.command = self.command + np.clip(target - self.command, -self.step_limit,
                                              self.step_limit)
        for controller, idx, pub in self.controller_pubs:
            # one point the robot's trajectory lead ahead, as the smoother sends them: the arm
            # follows the operator as it will follow the policy
            pub.publish(conversions.controller_command(
                controller, self.command[idx],
                [conversions.to_duration(self.robot.trajectory_lead_s)]))

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()


def main(args: list[str] | None = None) -> int:
    return run_nodes([TeleopNode], args)


if __name__ == "__main__":
    sys.exit(main())
