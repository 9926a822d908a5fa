"""Camera transport alone, for comparison with `wam-ros bench pipeline --graph launched`: the
fake robot's cameras at the robot's own size (CobotMagic: 3 x 640x480 rgb8 at 30 Hz) to a bare
raw subscriber in this process that reads only each frame's stamp (no decoding, no resize, no
WAM node running), with the Fast DDS environment the launch files give.

    .venv/bin/python tools/bench_camera_transport.py [SECONDS] [ROBOT]

Prints one JSON line: frames received, per second, camera stamp -> receipt p50 / p99 ms.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main(seconds: float = 20.0, robot: str = "cobot_magic") -> dict:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from wam_ros.bringup.graph import NodeSpec, dds_environment
    from wam_ros.core.robot import RobotSpec
    from wam_ros.nodes import conversions, topics
    from wam_ros.testing.process import NodeProcess

    os.environ.update(dds_environment())
    spec = RobotSpec.load(robot)
    fake = NodeSpec("wam_fake_robot", "", "wam_ros.nodes.fake_robot",
                    {"robot": robot, "camera_scale": 1.0})
    proc = NodeProcess(fake.command(), own_session=False)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("camera_transport_probe", context=context)
    latencies: list[float] = []

    def on_frame(raw: bytes) -> None:
        now = time.time()
        latencies.append(now - conversions.to_sec(conversions.image_from_cdr(raw).header.stamp))

    for cam in spec.cameras:
        node.create_subscription(Image, topics.robot_topic(cam.topic), on_frame,
                                 topics.SENSOR_QOS, raw=True)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        for window, keep in ((5.0, False), (seconds, True)):  # discovery and warm-up first
            if not keep:
                latencies.clear()
            end = time.time() + window
            while time.time() < end:
                executor.spin_once(timeout_sec=0.05)
            if not keep:
                latencies.clear()
    finally:
        proc.stop()
        node.destroy_node()
        context.try_shutdown()
    ms = np.array(latencies) * 1e3
    return {"robot": robot, "frames": int(ms.size), "frames_per_s": round(ms.size / seconds, 1),
            "stamp_to_receipt_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                                    "p99": round(float(np.percentile(ms, 99)), 2)}}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(float(args[0]) if args else 20.0, args[1] if len(args) > 1
                          else "cobot_magic")))
