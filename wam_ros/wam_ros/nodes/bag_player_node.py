"""Bag player node: a recorded bag onto its topics, raw bytes in the original timing, with
/clock, so the real node graph (use_sim_time:=true) runs against it as if it were the robot.

The schedule (rate, loop, stamp shifting, clock ticks) is data.playback.Playback; this node
publishes each event from a thread of its own at its wall-clock time (the executor stays free).
Any rosbag2 bag rosbags reads works: ours, `ros2 bag record` MCAP or sqlite3 (Humble..Kilted).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from wam_ros.core.config import ConfigError
from wam_ros.data.bag_reader import open_bag
from wam_ros.data.playback import Playback, PlaybackSettings
from wam_ros.nodes import topics
from wam_ros.nodes.common import run_nodes
from wam_ros.nodes.params import declare_settings
from wam_ros.nodes.recorder_node import declare_string_array, end_process, message_class


class BagPlayerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("wam_bag_player", **kwargs)
        declare_string_array(self, "topics")
        s = self.settings = declare_settings(self, PlaybackSettings)
        try:
            self.playback = Playback(open_bag(s.bag, include_partial=s.include_partial), s)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"bag player: {exc}") from exc
        bag = self.playback.bag
        wanted = s.topics or tuple(bag.topics)
        self.pubs = {t: self.create_publisher(message_class(bag.topics[t]), t, topics.PLAYBACK_QOS)
                     for t in wanted}
        self.clock_pub = (self.create_publisher(Clock, topics.CLOCK, topics.PLAYBACK_QOS)
                          if s.clock_hz > 0 else None)
        self.published: dict[str, int] = {t: 0 for t in wanted}
        self.done = threading.Event()
        self.lag_s: list[float] = []  # publish time - due time (how well timing is kept)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.get_logger().info(
            f"{bag.path}: {len(self.pubs)} topics, {self.playback.duration_s:.1f} s at rate "
            f"{s.rate:g}" + (" (loop)" if s.loop else "") + (
                f", /clock at {s.clock_hz:g} Hz" if self.clock_pub else ""))
        self.create_timer(s.start_delay_s or 1e-3, self._start_once)

    def _start_once(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
            self._thread.start()

    def start(self) -> None:
        """Start playing now (instead of after start_delay_s)."""
        self._start_once()

    def _play(self) -> None:
        wall0 = time.monotonic()
        for ev in self.playback.events():
            if self._stop.is_set():
                return
            delay = wall0 + ev.wall_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.lag_s.append(-delay)
            if ev.topic is None:
                if self.clock_pub is not None:
                    self.clock_pub.publish(Clock(clock=Time(sec=ev.time_ns // 1_000_000_000,
                                                             nanosec=ev.time_ns % 1_000_000_000)))
                continue
            self.pubs[ev.topic].publish(ev.data)  # raw CDR bytes, as recorded
            self.published[ev.topic] += 1
        self.done.set()
        total = sum(self.published.values())
        self.get_logger().info(f"played {total} messages ({self.playback.passes} passes)")
        if self.settings.exit_when_done:
            end_process()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def main(args: list[str] | None = None) -> int:
    return run_nodes([BagPlayerNode], args)


if __name__ == "__main__":
    sys.exit(main())
