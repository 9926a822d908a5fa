"""Approximate-time synchronisation of N cameras and joint states (ROS-free, time passed in).

The newest complete set wins: a set is N frames, one per camera, whose stamps lie within `slop`
of each other, plus the joints at the set's stamp, so that the positions are those of the
instant the images show: interpolated between the joint states either side of it; or, when the
newest joint state is before the set by no more than the interval between the last two
(`extrapolate`), extrapolated from those two at once, instead of waiting up to that interval
for the next (joint states at 100 Hz: 5 ms on average, 10 at worst, on every observation).
Otherwise a set waits up to `joint_slop` (of `now` past its stamp) for the joint state after
its stamp, then takes the newest one before it if that lies within `joint_slop`; with only
later joint states, the earliest within `joint_slop`. Frames older than `max_age` on arrival
(stale) or not newer than the last frame of their camera (out-of-order) are dropped and
counted; so are frames a newer set overtook. Frames and joint states stamped more than
`max_future` after `now` are dropped too (`future`, `joint_state_future`) and not remembered:
one stamp from the future would otherwise make every later message look out of order. After
the node's clock jumps back, `reset` starts over.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyncedSet:
    stamp: float  # newest frame stamp in the set
    images: dict[str, np.ndarray]  # camera -> image, in camera order
    image_stamps: dict[str, float]
    joint_positions: np.ndarray
    joint_stamp: float
    received: float = float("nan")  # `now` when the last of its frames to arrive was added


class ApproximateSync:
    def __init__(self, cameras: tuple[str, ...] | list[str], slop: float, max_age: float,
                 joint_slop: float, queue_size: int = 6, extrapolate: bool = True,
                 max_future: float = 0.5) -> None:
        if not cameras:
            raise ValueError("ApproximateSync needs at least one camera")
        if slop < 0 or max_age <= 0 or joint_slop < 0:
            raise ValueError(f"slop {slop}, max_age {max_age}, joint_slop {joint_slop}: "
                             "allowed: slop >= 0, max_age > 0, joint_slop >= 0")
        self.cameras = tuple(cameras)
        self.slop, self.max_age, self.joint_slop = slop, max_age, joint_slop
        self.extrapolate = extrapolate
        self.max_future = max_future
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()
        self.last_drop = ""  # why add_frame / add_joint_state last returned False
        self.reset()

    def reset(self) -> None:
        """Forget every frame, joint state and stamp (the clock jumped back); counters stay."""
        with self._lock:
            self._frames = {c: deque(maxlen=self._queue_size) for c in self.cameras}
            self._joints: deque[tuple[float, np.ndarray]] = deque(maxlen=64)
            self._last_stamp = {c: -np.inf for c in self.cameras}
            self._last_joint_stamp = -np.inf
            self._last_emitted = -np.inf
            self._wait_until: float | None = None

    # ---- input ------------------------------------------------------------------------
    def add_frame(self, camera: str, stamp: float, image: np.ndarray, now: float) -> bool:
        """Queue a frame; False (and a counted reason) if it is dropped."""
        with self._lock:
            if camera not in self._frames:
                raise KeyError(f"unknown camera {camera!r}; allowed: {', '.join(self.cameras)}")
            if now - stamp > self.max_age:
                return self._drop("stale")
            if stamp - now > self.max_future:
                return self._drop("future")
            if stamp <= self._last_stamp[camera]:
                return self._drop("out_of_order")
            self._last_stamp[camera] = stamp
            self._frames[camera].append((stamp, image, now))
            return True

    def add_joint_state(self, stamp: float, positions: np.ndarray, now: float) -> bool:
        with self._lock:
            if not np.all(np.isfinite(positions)):
                return self._drop("joint_state_nan")
            if now - stamp > self.max_age:
                return self._drop("joint_state_stale")
            if stamp - now > self.max_future:
                return self._drop("joint_state_future")
            if stamp <= self._last_joint_stamp:
                return self._drop("joint_state_out_of_order")
            self._last_joint_stamp = stamp
            self._joints.append((stamp, positions))
            return True

    def _drop(self, reason: str) -> bool:
        self.dropped[reason] += 1
        self.last_drop = reason
        return False

    # ---- output -----------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        """While a set waits for the joint state after its stamp: the time (`now`'s clock) from
        which a poll emits it without one; None otherwise. A node with no other message to
        come polls again then."""
        return self._wait_until

    def poll(self, now: float) -> SyncedSet | None:
        """The newest complete set not emitted before, or None."""
        with self._lock:
            self._wait_until = None
            self._expire(now)
            if any(not q for q in self._frames.values()) or not self._joints:
                return None
            # the set cannot be newer than the slowest camera's newest frame
            pivot = min(q[-1][0] for q in self._frames.values())
            chosen = {c: min(q, key=lambda f, p=pivot: abs(f[0] - p))
                      for c, q in self._frames.items()}
            stamps = [f[0] for f in chosen.values()]
            if max(stamps) - min(stamps) > self.slop:
                return None
            stamp = max(stamps)
            if stamp <= self._last_emitted:
                return None
            at = self._joints_at(stamp, now)
            if at is None:
                return None
            joint_stamp, joints = at
            self._last_emitted = stamp
            for c, q in self._frames.items():  # frames up to the chosen one are used up
                used = chosen[c][0]
                while q and q[0][0] <= used:
                    if q.popleft()[0] < used:
                        self.dropped["overtaken"] += 1
            return SyncedSet(
                stamp=stamp,
                images={c: chosen[c][1] for c in self.cameras},
                image_stamps={c: chosen[c][0] for c in self.cameras},
                joint_positions=joints,
                joint_stamp=joint_stamp,
                received=max(f[2] for f in chosen.values()),
            )

    def _joints_at(self, stamp: float, now: float) -> tuple[float, np.ndarray] | None:
        """(stamp of the positions, positions) for a set at `stamp`, or None: none close enough,
        or waiting for the joint state after `stamp`. Joint stamps increase (add_joint_state)."""
        # first joint state at or after the set: a set is nearly always among the newest
        i = len(self._joints)
        while i > 0 and self._joints[i - 1][0] >= stamp:
            i -= 1
        if i == len(self._joints):  # all before it: the next one may be in flight
            t0, q0 = self._joints[-1]
            if stamp - t0 > self.joint_slop:
                return None
            if self.extrapolate and len(self._joints) > 1:
                tp, qp = self._joints[-2]
                if stamp - t0 <= t0 - tp <= 2 * self.joint_slop:  # the next is not due yet
                    return stamp, q0 + (stamp - t0) / (t0 - tp) * (q0 - qp)
            if now - stamp < self.joint_slop:
                self._wait_until = stamp + self.joint_slop
                return None
            return t0, q0
        t1, q1 = self._joints[i]
        if t1 == stamp:
            return t1, q1
        if i > 0:
            t0, q0 = self._joints[i - 1]
            if t1 - t0 <= 2 * self.joint_slop:
                w = (stamp - t0) / (t1 - t0)
                return stamp, q0 + w * (q1 - q0)
            t1, q1 = min((t0, q0), (t1, q1), key=lambda j: abs(j[0] - stamp))
        return (t1, q1) if abs(t1 - stamp) <= self.joint_slop else None

    def _expire(self, now: float) -> None:
        for q in self._frames.values():
            while q and now - q[0][0] > self.max_age:
                q.popleft()
                self.dropped["expired"] += 1
        while self._joints and now - self._joints[0][0] > self.max_age:
            self._joints.popleft()
