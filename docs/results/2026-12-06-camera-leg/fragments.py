"""Wake-ups of a subscriber's threads per 921,600-byte sensor_msgs/Image (an experiment, not part
of the package): run `sub` and `pub` side by side with the same Fast DDS environment; the
subscriber prints the messages it took and each thread's voluntary context switches per message
(for the shared-memory receive thread: one per fragment it was woken for).

    python fragments.py sub 14 & sleep 1; python fragments.py pub 14; wait

An optional third argument gives the image's rows (640 columns, rgb8; default 480), to see
whether the wake-ups grow with the message's size (one per fragment) or not.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from wam_ros.nodes import conversions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "2026-12-06-launched-graph-tail"))
from trace_stages import context_switches, thread_name, threads


def switches() -> dict[str, int]:
    """thread name -> voluntary context switches so far, summed over this process's threads
    of that name"""
    out: dict[str, int] = {}
    for tid in threads(os.getpid()):
        name = thread_name(tid)
        out[name] = out.get(name, 0) + context_switches(tid)[0]
    return out


def main() -> None:
    role, seconds = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = Node(f"fragments_{role}")
    taken = [0]
    if role == "pub":
        pub = node.create_publisher(Image, "/fragments", qos_profile_sensor_data)
        rgb = np.zeros((int(sys.argv[3]) if len(sys.argv) > 3 else 480, 640, 3), np.uint8)
        node.create_timer(0.1, lambda: pub.publish(conversions.rgb_to_cdr(rgb, time.time())))
    else:
        node.create_subscription(Image, "/fragments",
                                 lambda raw: taken.__setitem__(0, taken[0] + 1),
                                 qos_profile_sensor_data, raw=True)
    end, start = time.time() + seconds, None
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        if start is None and taken[0] >= 10:  # discovery done, first messages through
            start = switches(), taken[0]
    if role == "sub" and start is not None:
        before, first = start
        after, n = switches(), taken[0] - start[1]
        print(f"{n} messages; voluntary switches per message:",
              {k: round((v - before.get(k, 0)) / n, 1) for k, v in after.items()
               if v - before.get(k, 0) > n / 2})


if __name__ == "__main__":
    main()
