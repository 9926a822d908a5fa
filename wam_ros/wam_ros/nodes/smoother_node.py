"""Smoother node: owns the execution timeline and commands ros2_control at the control rate.

Everything between a decoded chunk and a command — splicing, blending, Savitzky-Golay, limits,
watchdog, e-stop, deviation check — is core.safety.CommandPipeline; this node feeds it chunks,
joint states and stop requests, and turns its output into controller messages.

The e-stop is heard from a publisher of any QoS (topics.ESTOP_SUBSCRIPTION_QOS) and latches
until /wam/enable, which is refused while its cause persists. Joint states are validated where
they enter (core.inputs): a refused reading never reaches the pipeline, so a stream of them
starves its watchdog like silence. /diagnostics says ERROR while stopped, blind or cut off from
the policy, WARN while holding.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from functools import partial

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

from wam_ros.core.health import ERROR, WARN
from wam_ros.core.inputs import (
    ClockJump,
    EstopInput,
    InputRefused,
    JointStateCheck,
    check_stamp,
)
from wam_ros.core.pipeline import CommandPipeline, pipeline_config
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import SmootherSettings
from wam_ros.core.types import Chunk
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import OneShot, chunk_callback, run_nodes, stamp_sec
from wam_ros.nodes.diagnostics import Diagnostics
from wam_ros.nodes.params import declare_settings
from wam_ros_msgs.msg import ActionChunk


class SmootherNode(LifecycleNode):
    """A managed node: active, it commands the arm; inactive (deactivate), it sends nothing
    and leaves the arm to whatever else commands it (teleop), while still hearing the e-stop
    and the joint states; activated again, its first commands start at the measured pose, at
    rest. With `autostart` (the default, and what the launch files give) it activates itself."""

    def __init__(self, **kwargs) -> None:
        super().__init__("wam_smoother", **kwargs)
        s = self.settings = declare_settings(self, SmootherSettings)
        self.robot = RobotSpec.load(s.robot)
        # speed scaling changes live (the pipeline is built below)
        live = {"limits": {"live": lambda limits: self.pipeline.set_limits(limits),  # noqa: PLW0108
                           "live_fields": ("velocity_scale", "acceleration_scale")}}
        config = pipeline_config(lambda group, cls: declare_settings(
            self, cls, group, **live.get(group, {})))
        self.pipeline = CommandPipeline(self.robot, config, logger=self._log)
        self._tick_lock = threading.Lock()
        self.diag = Diagnostics(self, "smoother")
        self.joint_check = JointStateCheck(self.robot, config.safety.limit_margin)
        self.joint_input = self.diag.add_input(
            "joint_states", self.robot.joint_state_rate_hz,
            config.safety.observation_timeout_s or 1.0)
        self.chunk_input = self.diag.add_input("chunks", dead_after_s=0.0)
        self.diag.add_conditions(self._conditions)
        self.clock_jump = ClockJump()
        self.estop_input = EstopInput()
        self._upstream_seen: dict[str, float] = {}  # chunk topic -> last time it had a publisher
        self._active = False
        self.episode: int | None = None
        self.period = 1.0 / self.robot.control_rate_hz
        # trajectory controllers get the command the robot's lead ahead, then the plan's next
        # commands one period apart (forward controllers take only the command)
        streams = any(c.type == "joint_trajectory" for c in self.robot.controllers)
        self.preview_steps = (round(s.trajectory_preview_s * self.robot.control_rate_hz)
                              if streams else 0)
        self._point_times = [conversions.to_duration(self.robot.trajectory_lead_s
                                                     + k * self.period)
                             for k in range(self.preview_steps + 1)]
        self.outputs = []
        for c in self.robot.controllers:
            idx = [self.robot.action_layout.index(j) for j in c.joints]
            msg_type = conversions.controller_msg_type(c)
            self.outputs.append((c, idx, self.create_publisher(msg_type,
                                                               topics.robot_topic(c.topic),
                                                               topics.COMMAND_QOS)))
        self.applied_pub = self.create_publisher(TimeReference, topics.CHUNK_APPLIED,
                                                 topics.APPLIED_QOS)
        self.started_pub = self.create_publisher(TimeReference, topics.PLAN_STARTED,
                                                 topics.APPLIED_QOS)
        self.commanded_pub = (self.create_publisher(JointState, topics.COMMANDED, 50)
                              if s.publish_commanded else None)
        inputs = MutuallyExclusiveCallbackGroup()
        self.chunk_sub = self.create_subscription(
            ActionChunk, topics.CHUNK_JOINT, chunk_callback(self.diag, self.accept_chunk),
            topics.CHUNK_QOS, callback_group=inputs)
        # observation stamp of the plan whose first command goes out next (PLAN_STARTED)
        self._first_of: float | None = None
        # splice reports waiting for the new plan's first command (then they go out)
        self._applied: deque[TimeReference] = deque()
        self.create_subscription(JointState, topics.robot_topic(self.robot.joint_state_topic),
                                 self.on_joints,
                                 topics.SENSOR_QOS, callback_group=inputs)
        # each publisher is incompatible with some of these subscriptions by design: rclpy's
        # warning about it would be noise
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda _event: None)
        self.estop_subs = [self.create_subscription(Bool, topics.ESTOP,
                                                    partial(self.on_estop, channel), qos,
                                                    callback_group=inputs,
                                                    event_callbacks=quiet)
                           for channel, qos in zip(EstopInput.CHANNELS,
                                                   topics.ESTOP_SUBSCRIPTION_QOS)]
        self.create_service(Trigger, topics.ENABLE_SERVICE, self.on_enable, callback_group=inputs)
        self.create_service(Trigger, topics.HOME_SERVICE, self.on_home, callback_group=inputs)
        # the control tick has a group of its own: nothing else can delay a command
        control = MutuallyExclusiveCallbackGroup()
        self.timer = self.create_timer(self.period, self._on_timer, callback_group=control)
        # one-shot: a plan that arrives less than the minimum command interval after a
        # command gets its first command as soon as that has passed (not at the next tick)
        self._first_command = OneShot(self, self._early_tick, control)
        self.create_timer(1.0, self._diagnostics, callback_group=inputs)
        self.get_logger().info(
            f"{self.robot.name}: {len(self.outputs)} controllers at "
            f"{self.robot.control_rate_hz:g} Hz (trajectory lead "
            f"{self.robot.trajectory_lead_s * 1e3:.0f} ms), blend {config.timeline.blend}")
        if s.autostart:
            self.trigger_configure()
            self.trigger_activate()

    def _log(self, message: str) -> None:
        self.get_logger().warning(message)

    def _name(self, name: str) -> str:
        return topics.qualified(self.get_namespace(), name)

    def _now(self) -> float:
        now = stamp_sec(self)
        if self.clock_jump.update(now):
            self.get_logger().warning("the clock jumped back: plan dropped, holding, watchdogs "
                                      "restarted")
            self.pipeline.on_clock_jump(now)
            self.diag.health.reset_clock(now)
        return now

    def accept_chunk(self, chunk: Chunk) -> None:
        """A decoded, absolute chunk (from the topic, or in-process in the composed form)."""
        now = self._now()
        if not self._active:  # inactive: the arm is not ours to command
            self.chunk_input.refuse(now, "inactive", f"chunk {chunk.chunk_id}: not active")
            return
        if self.episode is not None and chunk.episode_id != self.episode:
            self.pipeline.reset_episode(chunk.episode_id)
        self.episode = chunk.episode_id
        result = self.pipeline.offer_chunk(chunk, now)
        if not result.accepted:
            assert result.reason is not None
            self.chunk_input.refuse(now, result.reason.value, result.message)
            return
        self.chunk_input.good(now)
        # Tells the policy how long its chunks take from finished to executing (the stamp:
        # the splice). Sent after the plan's first command: sai then starts its next
        # speculation, which must not delay that command.
        self._applied.append(TimeReference(
            header=Header(stamp=conversions.to_time(now)),
            time_ref=conversions.to_time(chunk.stamp), source=self.get_name()))
        self._first_of = chunk.stamp
        wait = self.pipeline.early_step_wait(now)
        if wait == 0.0:
            # act on the new plan now instead of at the next tick (up to a period later)
            self._early_tick()
        elif wait is not None:
            self._first_command.arm(wait)

    def _early_tick(self) -> None:
        if self.tick(early=True):  # the tick period restarts from this command
            self.timer.reset()

    def on_joints(self, msg: JointState) -> None:
        now = self._now()
        try:
            check_stamp(conversions.to_sec(msg.header.stamp), now, self.settings.max_future_s,
                        "joint state")
            q = self.joint_check(list(msg.name), list(msg.position))
        except InputRefused as exc:
            self.diag.refuse(exc.reason, str(exc), self.joint_input, now)
            self.pipeline.refuse_measurement(now, exc.reason, str(exc))
            return
        self.joint_input.good(now)
        # the ticks take it from the pipeline: never an older reading once this one is refused
        self.pipeline.offer_observation(now, q)

    @property
    def estop_asserted(self) -> bool:
        """Some e-stop publisher's newest message says true."""
        return self.estop_input.asserted

    def on_estop(self, channel: str, msg: Bool) -> None:
        if msg.data:  # any `true`, from whichever subscription, stops the arm
            first = self.pipeline.monitor.latched is None
            self.pipeline.estop(self._now(), "e-stop topic")
            if first:
                self.get_logger().error("E-STOP: decelerating to a hold; call "
                                        f"{self._name(topics.ENABLE_SERVICE)} to re-enable")
        # whether the input still asserts it (re-enabling waits for its release): copies of
        # one message on several subscriptions must not undo a release (core.inputs)
        was = self.estop_input.asserted
        best_effort = channel == "best_effort" and any(
            p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            for p in self.get_publishers_info_by_topic(topics.ESTOP))
        self.estop_input.offer(bool(msg.data), channel, best_effort)
        if was and not self.estop_input.asserted:
            self.get_logger().info(f"e-stop released; the stop stays latched until "
                                   f"{self._name(topics.ENABLE_SERVICE)}")

    def on_enable(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        result = self.pipeline.reenable(self._now(), self.estop_asserted)
        response.success, response.message = result.ok, result.message
        if result.ok:  # (rclpy refuses one call site logging at two severities)
            self.get_logger().info(f"enable: {response.message}")
        else:
            self.get_logger().warning(f"enable: {response.message}")
        return response

    def on_home(self, request: Trigger.Request, response: Trigger.Response
                ) -> Trigger.Response:
        try:
            duration = self.pipeline.go_home(stamp_sec(self))
        except RuntimeError as exc:
            response.success, response.message = False, f"cannot go home: {exc}"
        else:
            response.success, response.message = True, f"homing for {duration:.2f} s"
        self.get_logger().info(f"home: {response.message}")
        return response

    def _on_timer(self) -> None:
        # no parameter: the EventsExecutor hands a TimerInfo to timer callbacks that take one
        self.tick()

    def tick(self, early: bool = False) -> bool:
        """One command (early: an extra one for a fresh plan); False if none went out."""
        # The control timer and an early step for a fresh plan run on different executor
        # threads: time, step and publication happen under one lock, so commands leave in the
        # order (and with the stamps) they were computed in, never a newer one first.
        with self._tick_lock:
            return self._tick(early)

    def _tick(self, early: bool) -> bool:
        now = self._now()
        if not self._active:  # the arm is left to other controllers
            return False
        try:
            out = self.pipeline.step(now, early=early, offered=True)
        except RuntimeError as exc:  # command guard: latched inside the pipeline
            self.diag.refuse("command_guard", str(exc))
            return False
        if out is None:  # no joint state yet, or a command went out less than the
            # minimum command interval ago: nothing is commanded
            return False
        # the commands the next ticks would send, in case one is late
        ahead = self.pipeline.preview(now, self.preview_steps)
        stamp = conversions.to_time(now)
        for controller, idx, pub in self.outputs:
            # A trajectory is stamped with the time the command is for, not zero ("on
            # receipt"): the controller reaches the first point the robot's trajectory lead
            # after that, however long the message took (as the demonstrations' commands were
            # reached), interpolating between our ticks. The next tick replaces the rest
            # before it is reached.
            pub.publish(conversions.controller_command(
                controller, out.positions[idx], self._point_times, ahead[:, idx], stamp,
                out.velocities[idx] if self.settings.trajectory_velocities else None,
                self.period))
        if self.commanded_pub is not None:
            self.commanded_pub.publish(conversions.make_joint_state(
                self.robot.action_layout, out.positions, now, out.velocities))
        if self._first_of is not None:
            # the first command of a new plan: end-to-end latency is measured on exactly it
            self.started_pub.publish(TimeReference(
                header=Header(stamp=conversions.to_time(now)),
                time_ref=conversions.to_time(self._first_of), source=self.get_name()))
            self._first_of = None
        while self._applied:
            self.applied_pub.publish(self._applied.popleft())
        return True

    def _diagnostics(self) -> None:
        self.diag.set_counters(self.pipeline.diagnostics(self._now()))

    # ---- lifecycle ------------------------------------------------------------------------
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # whatever moved the arm meanwhile, commanding starts where it is, at rest
        self.pipeline.release()
        self._active = True
        self.get_logger().info("active: commanding")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._tick_lock:
            self._active = False
            self.pipeline.release()
        self.get_logger().info("inactive: not commanding; the arm is left to other controllers")
        return super().on_deactivate(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._tick_lock:
            self._active = False
        return TransitionCallbackReturn.SUCCESS

    def _conditions(self, now: float) -> list[tuple[int, str]]:
        if not self._active:
            return [(WARN, "inactive (lifecycle): not commanding")]
        out = self.pipeline.conditions(now)
        if self.pipeline.monitor.latched is not None:
            release = " release the e-stop, then" if self.estop_asserted else ""
            enable = self._name(topics.ENABLE_SERVICE)
            out = [(lvl, f"{msg};{release} call {enable}" if lvl == ERROR else msg)
                   for lvl, msg in out]
        # A node upstream that died leaves its topic without a publisher: the arm holds (the
        # chunk watchdog), and this says who is missing.
        for topic, who in ((topics.CHUNK_JOINT, "decoder"), (topics.CHUNK_RAW, "policy")):
            if self.count_publishers(topic):
                self._upstream_seen[topic] = now
                continue
            seen = self._upstream_seen.get(topic)
            if seen is None:
                out.append((WARN, f"waiting for the {who} node (nothing publishes "
                                  f"{self._name(topic)})"))
            elif now - seen >= self.settings.upstream_dead_after_s:
                out.append((ERROR, f"{who} node gone: nothing has published "
                            f"{self._name(topic)} for {now - seen:.1f} s; holding"))
        return out


def main(args: list[str] | None = None) -> int:
    return run_nodes([SmootherNode], args, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
