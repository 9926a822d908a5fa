"""Child process for test_messages.py: echoes Observation and ActionChunk messages back and,
on request, streams raw 640x480 camera images. Run as a script."""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import UInt32

from wam_ros.nodes.conversions import rgb_to_image
from wam_ros_msgs.msg import ActionChunk, Observation


class Echo(Node):
    def __init__(self) -> None:
        super().__init__("wam_test_echo")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.obs_pub = self.create_publisher(Observation, "/test/obs_echo", reliable)
        self.chunk_pub = self.create_publisher(ActionChunk, "/test/chunk_echo", reliable)
        self.image_pub = self.create_publisher(
            type(rgb_to_image(np.zeros((1, 1, 3), np.uint8), 0.0)), "/test/image",
            QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(Observation, "/test/obs", self.obs_pub.publish, reliable)
        self.create_subscription(ActionChunk, "/test/chunk", self.chunk_pub.publish, reliable)
        self.create_subscription(UInt32, "/test/stream_images", self.start_stream, reliable)
        self.to_send = 0
        self.sent = 0
        self.rng = np.random.default_rng(0)
        self.timer = self.create_timer(1.0 / 30.0, self.tick)

    def start_stream(self, msg: UInt32) -> None:
        self.to_send = msg.data

    def tick(self) -> None:
        if self.sent >= self.to_send:
            return
        # pixel (0, 0) carries the frame index so the receiver can check order and loss
        img = self.rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        img[0, 0] = (self.sent % 256, self.sent // 256, 7)
        self.image_pub.publish(rgb_to_image(img, self.get_clock().now().nanoseconds * 1e-9))
        self.sent += 1


def main() -> int:
    rclpy.init()
    node = Echo()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
