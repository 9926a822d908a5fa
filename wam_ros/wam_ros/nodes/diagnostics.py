"""/diagnostics for a node: a summary status whose level means something (core.health), one
status per input (rate, silence, refusals), counters, and refusals logged once per reason.

Published on a timer whether or not data flows: a node whose inputs went silent says so.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from wam_ros.core.health import ERROR, OK, WARN, Health, InputHealth
from wam_ros.nodes import topics

Conditions = Callable[[float], list[tuple[int, str]]]

# core.health's levels are diagnostic_msgs' levels
assert (OK, WARN, ERROR) == (ord(DiagnosticStatus.OK), ord(DiagnosticStatus.WARN),
                             ord(DiagnosticStatus.ERROR))


class Diagnostics:
    def __init__(self, node: Node, component: str, period_s: float = 1.0,
                 window_s: float = 5.0, callback_group=None) -> None:
        self.node = node
        self.health = Health(component, node.get_namespace())
        self.name = self.health.name
        self.window_s = window_s
        self._lock = threading.Lock()
        self.refusals: Counter[str] = Counter()
        self._recent: deque[tuple[float, str]] = deque()  # node-level refusals
        self._values: dict[str, object] = {}
        self._conditions: list[Conditions] = []
        self._pub = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        node.create_timer(period_s, self.publish, callback_group=callback_group)

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def add_input(self, name: str, rate_hz: float = 0.0, dead_after_s: float = 1.0,
                  rate_tolerance: float = 0.5) -> InputHealth:
        return self.health.add_input(InputHealth(name, rate_hz, dead_after_s,
                                                 rate_tolerance=rate_tolerance,
                                                 started=self._now()))

    def add_conditions(self, conditions: Conditions) -> None:
        """`conditions(now)` -> [(level, message)]: the node's own state (a latched stop...)."""
        self._conditions.append(conditions)

    def refuse(self, reason: str, message: str, source: InputHealth | None = None,
               now: float | None = None) -> None:
        """Count a refusal (per input when `source` is given); log the first of each reason."""
        now = self._now() if now is None else now
        key = f"{source.name}.{reason}" if source is not None else reason
        with self._lock:
            first = self.refusals[key] == 0
            self.refusals[key] += 1
            if source is None:
                self._recent.append((now, f"{reason}: {message}"))
        if source is not None:
            source.refuse(now, reason, message)
        if first:
            self.node.get_logger().warning(f"refused ({key}): {message}")

    def set_value(self, key: str, value: object) -> None:
        with self._lock:
            self._values[key] = value

    def set_counters(self, counters: dict[str, int]) -> None:
        with self._lock:
            self._values.update(counters)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            out = dict(self._values)
            out.update({f"refused_{k}": v for k, v in self.refusals.items()})
            return out

    def statuses(self, now: float | None = None):
        """core.health Statuses: [summary, one per input]."""
        now = self._now() if now is None else now
        conditions: list[tuple[int, str]] = []
        for get in self._conditions:
            conditions.extend(get(now))
        with self._lock:
            while self._recent and self._recent[0][0] < now - self.window_s:
                self._recent.popleft()
            if self._recent:
                conditions.append((WARN, f"{len(self._recent)} refused in the last "
                                   f"{self.window_s:g} s ({self._recent[-1][1]})"))
        return self.health.statuses(now, conditions, self.snapshot())

    def publish(self) -> None:
        now = self._now()
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for s in self.statuses(now):
            msg.status.append(DiagnosticStatus(
                level=bytes([s.level]), name=s.name, message=s.message,
                hardware_id=self.node.get_name(),
                values=[KeyValue(key=k, value=_fmt(v)) for k, v in s.values.items()]))
        self._pub.publish(msg)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
