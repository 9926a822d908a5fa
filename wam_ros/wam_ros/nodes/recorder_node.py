"""Recorder node: what the policy sees and what the operator commands, one bag per episode.

Records, from raw subscriptions (exact CDR bytes, never deserialised), the robot config's
cameras, follower joint states and teleop topics (leader arms / command topic), plus any
`extra_topics`, through data.recorder.Recorder (crash-safe MCAP segments, see data/bag_writer.py).

Episode control, all equivalent:
  terminal keys (keyboard or foot pedal; `keys` parameter): space / pagedown start or stop-and-
    keep, d / pageup discard, y / n mark success / failure, q quit
  services: /wam/record/start, /wam/record/stop (keep), /wam/record/discard (std_srvs/Trigger),
    /wam/record/mark_success (std_srvs/SetBool: true = success, false = failure)
  parameters `task` and `note` (ros2 param set) apply to the next episode started.
A status line (elapsed time, messages per topic, dropped / late) is printed on the terminal and
published as JSON on /wam/record/status.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
from functools import partial
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from wam_ros.core.config import ConfigError
from wam_ros.core.robot import RobotSpec
from wam_ros.data.keys import TerminalKeys
from wam_ros.data.recorder import (
    Recorder,
    RecorderConfig,
    RecorderNodeSettings,
    RecordingRefused,
    parse_key_bindings,
    recorded_topics,
)
from wam_ros.nodes import topics
from wam_ros.nodes.common import run_nodes
from wam_ros.nodes.params import declare_settings

try:  # Iron and later hand message info (publisher GID, sequence numbers) to callbacks
    from rclpy.subscription import MessageInfo  # noqa: F401

    WITH_INFO = True
except ImportError:  # Humble
    WITH_INFO = False


def message_class(msgtype: str) -> type:
    """"sensor_msgs/msg/Image" -> the generated Python class."""
    package, _, name = msgtype.replace("/msg/", "/").partition("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"message type {msgtype!r} is not installed here ({exc})") from exc


def end_process() -> None:
    """End this node's process as Ctrl-C does: rclpy's signal handler shuts the context down
    and main() closes every node (an episode in progress is kept). Shutting the context down
    from inside a callback instead races the executor's other threads."""
    os.kill(os.getpid(), signal.SIGINT)


def _short(topic: str) -> str:
    """/camera_f/color/image_raw -> camera_f, /master/joint_left -> joint_left."""
    parts = [p for p in topic.split("/") if p and p not in ("image_raw", "color", "compressed")]
    return parts[-1] if parts else topic


def declare_string_array(node: Node, name: str) -> None:
    """Declare a string-array parameter whose default is empty (declare_settings would infer a
    byte array from an empty list)."""
    node.declare_parameter(name, Parameter.Type.STRING_ARRAY)
    try:
        node.get_parameter(name)
    except ParameterUninitializedException:
        node.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, [])])


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("wam_recorder", **kwargs)
        declare_string_array(self, "extra_topics")
        s = self.settings = declare_settings(self, RecorderNodeSettings)
        self.config = declare_settings(self, RecorderConfig)
        self.robot = RobotSpec.load(s.robot)
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        self.key_actions = parse_key_bindings(s.keys)
        wanted = recorded_topics(self.robot, teleop=s.record_teleop)
        self._pending_extra: list[str] = []
        for entry in s.extra_topics:
            name, _, msgtype = entry.partition(":")
            if msgtype:
                wanted[name] = msgtype
            else:
                self._pending_extra.append(name)
        self.recorder = Recorder(self.config, self.robot.name, {}, clock=self._now_ns,
                                 log=self.get_logger().info)
        self._subscribed: dict[str, str] = {}
        self._data_group = ReentrantCallbackGroup()  # offer() is thread-safe and short
        for name, msgtype in wanted.items():
            self._subscribe(name, msgtype)
        control = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, topics.RECORD_START, self.on_start, callback_group=control)
        self.create_service(Trigger, topics.RECORD_STOP, partial(self.on_stop, True),
                            callback_group=control)
        self.create_service(Trigger, topics.RECORD_DISCARD, partial(self.on_stop, False),
                            callback_group=control)
        self.create_service(SetBool, topics.RECORD_MARK, self.on_mark, callback_group=control)
        self.status_pub = self.create_publisher(String, topics.RECORD_STATUS, 10)
        self.create_timer(s.status_period_s, self.publish_status, callback_group=control)
        self.keys = TerminalKeys() if s.keyboard else None
        self.tty = bool(self.keys and self.keys.available)
        if self.tty:
            self.keys.open()
            self.create_timer(0.05, self.poll_keys, callback_group=control)
        if self._pending_extra:
            self.create_timer(1.0, self._discover, callback_group=control)
        self.get_logger().info(
            f"{self.robot.name}: recording {len(self._subscribed)} topics to "
            f"{self.config.output_dir} (flush every {self.config.flush_interval_s:g} s)"
            + (f"; keys: {s.keys}" if self.tty else ""))
        if s.autostart:
            self.start_episode()

    # ---- topics --------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _subscribe(self, name: str, msgtype: str) -> None:
        cls = message_class(msgtype)
        infos = self.get_publishers_info_by_topic(name)
        qos = topics.recording_qos(bool(infos) and all(
            i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos))
        callback = (partial(self._on_message_info, name) if WITH_INFO
                    else partial(self._on_message, name))
        self.create_subscription(cls, name, callback, qos, raw=True,
                                 callback_group=self._data_group)
        self._subscribed[name] = msgtype
        self.recorder.set_topics(self._subscribed)

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for name in list(self._pending_extra):
            if types.get(name):
                self._subscribe(name, types[name][0])
                self._pending_extra.remove(name)
                self.get_logger().info(f"recording {name} ({types[name][0]}) from the next "
                                       "episode on")

    def _on_message(self, topic: str, data: bytes) -> None:
        self.recorder.offer(topic, data)

    def _on_message_info(self, topic: str, data: bytes, info: dict) -> None:
        gid = info.get("publisher_gid") or {}
        publisher = bytes(gid.get("data", b"")) if isinstance(gid, dict) else None
        received = info.get("received_timestamp") or None
        # On system time the bag gets the middleware's reception time (as accurate as it
        # gets, whatever the executor's backlog); on sim time, the node's clock.
        self.recorder.offer(topic, data, received if not self._sim_time else None,
                            publisher=publisher or None,
                            sequence=info.get("publication_sequence_number"),
                            received_wall_ns=received)

    # ---- episode control ------------------------------------------------------------
    def _param(self, name: str) -> str:
        return str(self.get_parameter(name).value or "")

    def start_episode(self) -> tuple[bool, str]:
        try:
            path = self.recorder.start(task=self._param("task"), note=self._param("note"))
        except (RecordingRefused, RuntimeError) as exc:
            self.get_logger().error(str(exc))
            return False, str(exc)
        return True, str(path)

    def stop_episode(self, keep: bool) -> tuple[bool, str]:
        path = self.recorder.stop(keep=keep)
        if path is None:
            return False, "not recording"
        return True, str(path)

    def _mark(self, success: bool) -> tuple[bool, str]:
        try:
            return True, str(self.recorder.mark(success))
        except RuntimeError as exc:
            return False, str(exc)

    def on_start(self, request: Trigger.Request, response: Trigger.Response
                 ) -> Trigger.Response:
        response.success, response.message = self.start_episode()
        return response

    def on_stop(self, keep: bool, request: Trigger.Request, response: Trigger.Response
                ) -> Trigger.Response:
        response.success, response.message = self.stop_episode(keep)
        return response

    def on_mark(self, request: SetBool.Request, response: SetBool.Response
                ) -> SetBool.Response:
        response.success, response.message = self._mark(bool(request.data))
        return response

    def poll_keys(self) -> None:
        for key in self.keys.pending():  # type: ignore[union-attr]
            action = self.key_actions.get(key)
            if action == "toggle":
                action = "stop" if self.recorder.recording else "start"
            if action == "start":
                self.start_episode()
            elif action in ("stop", "discard"):
                self.stop_episode(action == "stop")
            elif action in ("success", "failure"):
                ok, message = self._mark(action == "success")
                if not ok:
                    self.get_logger().warning(message)
            elif action == "quit":
                self.stop_episode(True)
                end_process()
                return

    def publish_status(self) -> None:
        status = self.recorder.status()
        self.status_pub.publish(String(data=json.dumps(dataclasses.asdict(status))))
        if self.tty:
            line = status.line({t: _short(t) for t in status.counts})
            print("\r" + line[:200].ljust(120), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        # the context may be shut down already: log to the terminal, not to /rosout
        self.recorder.log = lambda message: print(f"[wam_recorder] {message}", file=sys.stderr)
        self.recorder.close()  # keeps an episode in progress
        if self.keys is not None:
            self.keys.close()
        if self.tty:
            print(file=sys.stderr)


def main(args: list[str] | None = None) -> int:
    return run_nodes([RecorderNode], args)


if __name__ == "__main__":
    sys.exit(main())
