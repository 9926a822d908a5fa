"""Observation node: N cameras + joint states -> synchronised wam_ros_msgs/Observation.

Decoding and resizing happen in the camera callbacks (each ~1 ms), synchronisation in
core.sync.ApproximateSync; this file only wires topics to it. Everything that enters is
validated first (core.inputs): a frame that cannot be decoded, is too large, or is stamped in the
future, and a joint state with duplicate, missing or implausible values, is refused and counted
per input; nothing from outside can raise out of a callback. A clock that jumps back resets the
synchroniser.

The cameras and image size come from the policy's input contract (topics.POLICY_INPUT, latched:
what its checkpoint or server takes), unless image_width / image_height are set; until the
contract arrives nothing is published, and /diagnostics says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import cv2
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from wam_ros.core.health import ERROR, WARN
from wam_ros.core.image import prepare_image
from wam_ros.core.inputs import ClockJump, InputRefused, JointStateCheck, check_stamp
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import ObservationSettings
from wam_ros.core.sync import ApproximateSync
from wam_ros.core.types import InputContract, Observation
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import OneShot, run_nodes, stamp_sec
from wam_ros.nodes.diagnostics import Diagnostics
from wam_ros.nodes.params import declare_settings
from wam_ros_msgs.msg import Observation as ObservationMsg


class ObservationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam_observation", **kwargs)
        # OpenCV's worker threads make a 640x480 -> 96x96 resize no faster (0.22 ms) but
        # spin a second core (0.44 ms CPU instead of 0.25): on 2 cores the graph needs it
        cv2.setNumThreads(1)
        self.settings = declare_settings(self, ObservationSettings)
        self.robot = RobotSpec.load(self.settings.robot)
        s = self.settings
        self.contract: InputContract | None = None
        self.sync: ApproximateSync | None = None
        self._contract_problem = ""
        self.joint_check = JointStateCheck(self.robot, s.limit_margin)
        self.clock_jump = ClockJump()
        self.sequence = 0
        self._dropped_reported = 0
        # composed bringup: consumers in this process get each Observation directly
        self.local_sinks: list[Callable[[Observation], None]] = []
        self.diag = Diagnostics(self, "observation")
        self.diag.add_conditions(self._conditions)
        self.inputs = {c.name: self.diag.add_input(c.name, c.rate_hz, s.input_dead_after_s,
                                                    s.rate_tolerance)
                       for c in self.robot.cameras}
        self.joint_input = self.diag.add_input("joint_states", self.robot.joint_state_rate_hz,
                                               s.input_dead_after_s, s.rate_tolerance)
        # a set waiting for the joint state after its images goes out at its deadline even
        # when no message comes to poll again (joint states slower than the frames, or gone)
        self._deadline = OneShot(self, self._emit)
        self.pub = self.create_publisher(ObservationMsg, topics.OBSERVATION,
                                         topics.OBSERVATION_QOS)
        for cam in self.robot.cameras:
            msg_type = CompressedImage if cam.compressed else Image
            topic = topics.robot_topic(cam.topic) + (
                "/compressed" if cam.compressed and not cam.topic.endswith("compressed") else "")
            # raw frames are taken serialized and read in place (conversions.image_from_cdr)
            self.create_subscription(msg_type, topic, partial(self.on_image, cam.name),
                                     topics.SENSOR_QOS, raw=not cam.compressed)
        self.create_subscription(JointState, topics.robot_topic(self.robot.joint_state_topic),
                                 self.on_joints,
                                 topics.SENSOR_QOS)
        if s.image_width:  # sized by parameters: every camera of the robot
            self.apply_contract(InputContract(self.robot.camera_names, s.image_height,
                                              s.image_width))
        else:
            self.create_subscription(String, topics.POLICY_INPUT, self.on_contract,
                                     topics.CONTRACT_QOS)
            where = topics.qualified(self.get_namespace(), topics.POLICY_INPUT)
            self.get_logger().info(f"{self.robot.name}: waiting for the policy's input "
                                   f"contract on {where}")

    def on_contract(self, msg: String) -> None:
        try:
            contract = InputContract.from_json(msg.data)
        except ValueError as exc:
            self._contract_problem = str(exc)
            self.get_logger().error(str(exc))
            return
        self.apply_contract(contract)

    def apply_contract(self, contract: InputContract) -> None:
        """Publish what the policy takes: its cameras, at its image size (the composed
        bringup hands the policy's contract over directly)."""
        if contract == self.contract:
            return
        unknown = [c for c in contract.cameras if c not in self.robot.camera_names]
        if unknown:
            self._contract_problem = (f"the policy takes cameras {unknown} that robot "
                                      f"{self.robot.name} does not have "
                                      f"({list(self.robot.camera_names)})")
            self.get_logger().error(self._contract_problem)
            return
        s = self.settings
        self.contract, self._contract_problem = contract, ""
        self.sync = ApproximateSync(contract.cameras, s.slop_s, s.max_age_s, s.joint_slop_s,
                                    extrapolate=s.joint_extrapolate, max_future=s.max_future_s)
        self.get_logger().info(
            f"{self.robot.name}: cameras {list(contract.cameras)} -> {topics.OBSERVATION} at "
            f"{contract.image_width}x{contract.image_height} (slop {s.slop_s * 1e3:.0f} ms)")

    def _conditions(self, now: float) -> list[tuple[int, str]]:
        if self._contract_problem:
            return [(ERROR, self._contract_problem)]
        if self.contract is None:
            where = topics.qualified(self.get_namespace(), topics.POLICY_INPUT)
            return [(WARN, f"waiting for the policy's input contract on {where} (is the "
                     "policy node up?)")]
        return []

    def _now(self) -> float:
        now = stamp_sec(self)
        if self.clock_jump.update(now):
            self.get_logger().warning("the clock jumped back: synchroniser reset")
            if self.sync is not None:
                self.sync.reset()
            self.diag.health.reset_clock(now)
        return now

    def on_image(self, camera: str, msg: bytes | CompressedImage) -> None:
        now = self._now()
        source = self.inputs[camera]
        s, contract, sync = self.settings, self.contract, self.sync
        if contract is None or sync is None or camera not in contract.cameras:
            source.good(now)  # alive; nothing to do with it (yet)
            return
        try:
            if isinstance(msg, bytes):  # a serialized sensor_msgs/Image
                msg = conversions.image_from_cdr(msg)
            stamp = conversions.to_sec(msg.header.stamp)
            check_stamp(stamp, now, s.max_future_s, f"camera {camera}")
            rgb = (conversions.compressed_to_rgb(msg, s.max_image_pixels)
                   if isinstance(msg, CompressedImage)
                   else conversions.image_to_rgb(msg, s.max_image_pixels))
            img = prepare_image(rgb, contract.image_height, contract.image_width,
                                s.resize_mode)
            if not img.flags.writeable:  # the frame itself (no resize): a view of `msg`
                img = img.copy()
        except InputRefused as exc:  # conversions.ImageError included
            self.diag.refuse(exc.reason, f"camera {camera}: {exc}", source, now)
            return
        except Exception as exc:  # a camera's bytes must never kill the node
            self.diag.refuse("undecodable", f"camera {camera}: {type(exc).__name__}: {exc}",
                             source, now)
            return
        self._offer(sync, source, lambda: sync.add_frame(camera, stamp, img, now), now)
        self._emit()

    def on_joints(self, msg: JointState) -> None:
        now = self._now()
        stamp = conversions.to_sec(msg.header.stamp)
        try:
            check_stamp(stamp, now, self.settings.max_future_s, "joint state")
            q = self.joint_check(list(msg.name), list(msg.position))
        except InputRefused as exc:
            self.diag.refuse(exc.reason, str(exc), self.joint_input, now)
            return
        sync = self.sync
        if sync is None:
            self.joint_input.good(now)
            return
        self._offer(sync, self.joint_input, lambda: sync.add_joint_state(stamp, q, now), now)
        self._emit()  # the joint state may be the last piece of a set

    def _offer(self, sync: ApproximateSync, source, add: Callable[[], bool], now: float
               ) -> None:
        """Hand a validated message to the synchroniser; one it drops (stale, out of order)
        is a refusal of its input, with the synchroniser's reason."""
        if add():
            source.good(now)
            return
        self.diag.refuse(sync.last_drop, f"{source.name}: dropped by the synchroniser", source,
                         now)

    def _emit(self) -> None:
        sync = self.sync
        if sync is None:
            return
        now = stamp_sec(self)
        synced = sync.poll(now)
        if synced is None:
            if sync.deadline is not None:
                self._deadline.arm(sync.deadline - now)
            return
        obs = Observation(synced.stamp, synced.images, synced.joint_positions,
                          sequence=self.sequence)
        for sink in self.local_sinks:  # before serialising the message: they are waiting
            sink(obs)
        dropped = sum(sync.dropped.values())
        self.pub.publish(conversions.observation_to_msg(
            obs, self.robot.action_layout, synced.image_stamps,
            dropped_frames=dropped - self._dropped_reported, received=synced.received))
        self._dropped_reported = dropped
        self.sequence += 1
        self.diag.set_counters({f"dropped_{k}": v for k, v in sync.dropped.items()})
        self.diag.set_value("published", self.sequence)


def main(args: list[str] | None = None) -> int:
    return run_nodes([ObservationNode], args, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
