"""/diagnostics for a node: counters, values and refusals logged once per reason."""

from __future__ import annotations

import threading
from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from wam_ros.nodes import topics


class Diagnostics:
    def __init__(self, node: Node, component: str, period_s: float = 1.0) -> None:
        self.node = node
        self.name = f"wam_ros/{component}"
        self._lock = threading.Lock()
        self.refusals: Counter[str] = Counter()
        self._values: dict[str, object] = {}
        self._level = DiagnosticStatus.OK
        self._message = "ok"
        self._pub = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        node.create_timer(period_s, self.publish)

    def refuse(self, reason: str, message: str) -> None:
        """Count a refusal; log it the first time this reason occurs."""
        with self._lock:
            first = self.refusals[reason] == 0
            self.refusals[reason] += 1
        if first:
            self.node.get_logger().warning(f"refused ({reason}): {message}")

    def set_value(self, key: str, value: object) -> None:
        with self._lock:
            self._values[key] = value

    def set_counters(self, counters: dict[str, int]) -> None:
        with self._lock:
            self._values.update(counters)

    def set_level(self, level: int, message: str) -> None:
        with self._lock:
            self._level, self._message = level, message

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            out = dict(self._values)
            out.update({f"refused_{k}": v for k, v in self.refusals.items()})
            return out

    def publish(self) -> None:
        status = DiagnosticStatus(name=self.name, hardware_id=self.node.get_name())
        with self._lock:
            status.level, status.message = self._level, self._message
        status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in self.snapshot().items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
