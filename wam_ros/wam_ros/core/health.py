"""Health of a node's inputs and of the node itself, as levels a person can act on (ROS-free,
time passed in). The nodes turn a `Health` into /diagnostics statuses.

Levels follow diagnostic_msgs: OK, WARN, ERROR. An input is
- ERROR (dead) when nothing usable came for `dead_after_s` (since start, or since its last good
  message): a stream of refused messages counts as silence;
- WARN when its rate over the last `window_s` is below (1 - rate_tolerance) x the expected rate,
  or when messages were refused in the last `window_s`;
- OK otherwise.
A node adds its own conditions (a latched stop is ERROR, a watchdog hold WARN) with `condition`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class Status:
    name: str
    level: int
    message: str
    values: dict[str, object]


def clock_text(t: float) -> str:
    """A node-clock time as the operator's wall clock reads it (UTC HH:MM:SS); a simulated
    clock (small values) as seconds."""
    if t < 1e9:
        return f"t={t:.1f} s"
    return time.strftime("%H:%M:%S", time.gmtime(t)) + " UTC"


class InputHealth:
    """Arrivals and refusals of one input (a camera, the joint states, the chunk stream)."""

    def __init__(self, name: str, rate_hz: float = 0.0, dead_after_s: float = 1.0,
                 window_s: float = 2.0, rate_tolerance: float = 0.5,
                 started: float | None = None) -> None:
        self.name = name
        self.rate_hz = rate_hz  # 0: no rate expected (event-driven input)
        self.dead_after_s = dead_after_s  # 0: never dead
        self.window_s = window_s
        self.rate_tolerance = rate_tolerance
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()
        self._refusals: deque[float] = deque()
        self.refused: Counter[str] = Counter()
        self.last_refusal = ""
        self.received = 0
        self._last_good: float | None = None
        self._started = started

    def good(self, now: float) -> None:
        with self._lock:
            self.received += 1
            self._last_good = now
            self._arrivals.append(now)
            self._trim(now)

    def refuse(self, now: float, reason: str, message: str = "") -> None:
        with self._lock:
            self.refused[reason] += 1
            self.last_refusal = f"{reason}: {message}" if message else reason
            self._refusals.append(now)
            self._trim(now)

    def reset_clock(self, now: float) -> None:
        """The clock jumped: forget times, restart the grace period."""
        with self._lock:
            self._arrivals.clear()
            self._refusals.clear()
            self._last_good = None
            self._started = now

    def _trim(self, now: float) -> None:
        for q in (self._arrivals, self._refusals):
            while q and q[0] < now - self.window_s:
                q.popleft()

    def status(self, now: float, prefix: str = "") -> Status:
        with self._lock:
            if self._started is None:
                self._started = now
            self._trim(now)
            since = self._last_good if self._last_good is not None else self._started
            silent = now - since
            span = min(self.window_s, max(now - self._started, 1e-9))
            rate = len(self._arrivals) / span
            values: dict[str, object] = {"rate_hz": rate, "received": self.received,
                                         "silent_s": silent}
            values.update({f"refused.{k}": v for k, v in self.refused.items()})
            if self.rate_hz:
                values["expected_rate_hz"] = self.rate_hz
            recent_refusals = len(self._refusals)
            level, message = OK, "ok"
            if self.dead_after_s and silent > self.dead_after_s:
                level = ERROR
                what = ("nothing received yet" if self._last_good is None
                        else "nothing usable")
                message = f"{what} for {silent:.1f} s"
                if recent_refusals:
                    message += f" ({recent_refusals} refused: {self.last_refusal})"
            elif (self.rate_hz and now - self._started >= self.window_s
                  and rate < (1.0 - self.rate_tolerance) * self.rate_hz):
                level, message = WARN, f"{rate:.1f} Hz, expected {self.rate_hz:g} Hz"
            elif recent_refusals:
                level = WARN
                message = (f"{recent_refusals} refused in the last {self.window_s:g} s "
                           f"({self.last_refusal})")
            return Status(prefix + self.name, level, message, values)


class Health:
    """A node's inputs plus its own conditions -> one summary status and one per input."""

    def __init__(self, component: str, namespace: str = "") -> None:
        """namespace: the node's ROS namespace ("/robot1" -> "robot1/wam_ros/<component>"),
        so two robots' statuses on the one /diagnostics topic stay apart."""
        ns = namespace.strip("/")
        self.name = f"{ns}/wam_ros/{component}" if ns else f"wam_ros/{component}"
        self.inputs: dict[str, InputHealth] = {}

    def add_input(self, health: InputHealth) -> InputHealth:
        self.inputs[health.name] = health
        return health

    def reset_clock(self, now: float) -> None:
        for h in self.inputs.values():
            h.reset_clock(now)

    def statuses(self, now: float, conditions: list[tuple[int, str]],
                 values: dict[str, object]) -> list[Status]:
        """[summary, input...]: the summary takes the worst level of the node's `conditions`
        and its inputs, with the message of each thing at that level."""
        inputs = [h.status(now, self.name + "/") for h in self.inputs.values()]
        items = [(lvl, msg) for lvl, msg in conditions] + [
            (s.level, f"{s.name.rsplit('/', 1)[-1]}: {s.message}") for s in inputs]
        worst = max((lvl for lvl, _ in items), default=OK)
        message = "; ".join(msg for lvl, msg in items if lvl == worst) if worst else "ok"
        return [Status(self.name, worst, message, values), *inputs]


__all__ = ["ERROR", "OK", "WARN", "Health", "InputHealth", "Status",
           "clock_text"]
