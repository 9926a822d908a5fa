"""Validation of what enters the graph from outside: joint states, stamps, encoded images,
and the node clock itself (ROS-free, time passed in).

Every check raises `InputRefused` with a short `reason` (the counter key in /diagnostics) and a
message an operator can act on. Nothing here remembers a refused value: a stamp from the future
or an implausible reading is dropped, never used as a reference for what comes next.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np

from wam_ros.core.robot import RobotSpec

# A reading may lie this share of a joint's range outside its limits (encoder noise at a hard
# stop, a gripper's overshoot) and still be believed; beyond it the reading is refused.
DEFAULT_LIMIT_MARGIN = 0.05
# Stamps up to this far ahead of the receiving node's clock are accepted (clock skew between
# hosts, a driver stamping at the end of exposure); beyond it they are refused.
DEFAULT_MAX_FUTURE_S = 0.5


class InputRefused(ValueError):
    """An input that must not be used; `reason` names the kind (a counter key)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_stamp(stamp: float, now: float, max_future_s: float = DEFAULT_MAX_FUTURE_S,
                what: str = "message") -> None:
    """Refuse a stamp that is not finite or lies more than `max_future_s` after `now`."""
    if not np.isfinite(stamp):
        raise InputRefused("bad_stamp", f"{what}: stamp {stamp!r} is not finite")
    if stamp - now > max_future_s:
        raise InputRefused("future_stamp", f"{what}: stamped {stamp - now:.3f} s ahead of this "
                           f"node's clock (allowed: {max_future_s:g} s); clocks out of sync?")


class JointStateCheck:
    """A JointState's (names, positions) -> positions in the robot's action order, or
    InputRefused: lengths differ, a name occurs twice, a joint is missing, a value is not
    finite, or a joint lies outside its limits by more than `margin` x its range."""

    def __init__(self, spec: RobotSpec, margin: float = DEFAULT_LIMIT_MARGIN) -> None:
        if not (np.isfinite(margin) and margin >= 0.0):
            raise ValueError(f"limit margin: got {margin!r}; allowed: >= 0 (share of a range)")
        self.names = tuple(spec.action_layout)
        lower, upper = spec.limits_array("lower"), spec.limits_array("upper")
        slack = margin * (upper - lower)
        self.lower, self.upper = lower - slack, upper + slack

    def __call__(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        if len(names) != len(positions):
            raise InputRefused("length_mismatch", f"joint state: {len(names)} names but "
                               f"{len(positions)} positions")
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in index:
                raise InputRefused("duplicate_names",
                                   f"joint state: {name!r} appears more than once")
            index[name] = i
        missing = [n for n in self.names if n not in index]
        if missing:
            raise InputRefused("missing_joints", f"joint state lacks {missing}")
        q = np.array([positions[index[n]] for n in self.names], dtype=np.float64)
        return self.plausible(q)

    def plausible(self, q: np.ndarray) -> np.ndarray:
        """`q` (D,) in action order if finite and within the limits plus the margin."""
        bad = ~np.isfinite(q)
        if bad.any():
            raise InputRefused("non_finite", "joint state: "
                               f"{[self.names[i] for i in np.flatnonzero(bad)]} not finite")
        out = (q < self.lower) | (q > self.upper)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise InputRefused("out_of_limits", (
                f"joint state: {self.names[i]} reads {q[i]:.4g}, outside "
                f"[{self.lower[i]:.4g}, {self.upper[i]:.4g}] (limits plus margin)"
                + (f" and {int(out.sum()) - 1} more" if out.sum() > 1 else "")))
        return q


def encoded_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG or PNG from its header alone, without decoding the pixels
    (PIL reads only the header on open). InputRefused when it is not a readable image."""
    if not data:
        raise InputRefused("empty", "compressed image with no data")
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns of bombs itself; we refuse them below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return int(img.width), int(img.height)
    except Image.DecompressionBombError as exc:
        raise InputRefused("too_large", f"{len(data)} bytes announce a decompression bomb "
                           f"({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputRefused("undecodable", f"{len(data)} bytes are not a readable image "
                           f"header ({type(exc).__name__})") from exc


def check_image_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputRefused("empty", f"image {width}x{height}")
    if width * height > max_pixels:
        raise InputRefused("too_large", f"image {width}x{height} = {width * height} pixels; "
                           f"allowed: <= {max_pixels} (max_image_pixels)")


class EstopInput:
    """Whether the e-stop input asserts a stop, from messages heard on the three e-stop
    subscriptions (topics.ESTOP_SUBSCRIPTION_QOS): `latched` (transient-local), `reliable`
    (volatile) and `best_effort`. One message of a reliable publisher arrives on `reliable` and
    also on `best_effort` (and on `latched` if it is transient-local), in any order across
    them, and the best-effort copy may be dropped: a late copy of `true` must not re-assert a
    stop its publisher has since released. So `reliable` speaks for every reliable publisher;
    `latched` only until `reliable` has heard anything (it exists for the stop latched before
    this node started); `best_effort` only while a best-effort publisher exists (the caller
    says). The newest accepted message decides. (The rclpy EventsExecutor cannot hand over
    message info, which would identify copies by publisher and source timestamp.)"""

    CHANNELS = ("latched", "reliable", "best_effort")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reliable_heard = False
        self._asserted = False

    def offer(self, value: bool, channel: str, best_effort_publishers: bool = True) -> bool:
        """A message heard on `channel`; True if it counts (then it decides `asserted`)."""
        if channel not in self.CHANNELS:
            raise ValueError(f"e-stop channel {channel!r}; allowed: {', '.join(self.CHANNELS)}")
        with self._lock:
            if channel == "latched" and self._reliable_heard:
                return False
            if channel == "best_effort" and not best_effort_publishers:
                return False
            if channel == "reliable":
                self._reliable_heard = True
            self._asserted = bool(value)
            return True

    @property
    def asserted(self) -> bool:
        with self._lock:
            return self._asserted


class ClockJump:
    """Notices a clock that went backwards (simulator reset, bag loop, a restarted /clock):
    `update(now)` is True once per jump of more than `tolerance_s` back from the newest time
    seen, after which the new time is the reference."""

    def __init__(self, tolerance_s: float = 0.05) -> None:
        self.tolerance_s = tolerance_s
        self._latest: float | None = None
        self._lock = threading.Lock()
        self.jumps = 0

    def update(self, now: float) -> bool:
        with self._lock:
            latest = self._latest
            if latest is None or now >= latest:
                self._latest = now
                return False
            if latest - now <= self.tolerance_s:  # threads reading the clock out of order
                return False
            self._latest = now
            self.jumps += 1
            return True


__all__ = ["DEFAULT_LIMIT_MARGIN", "DEFAULT_MAX_FUTURE_S", "ClockJump", "EstopInput",
           "InputRefused",
           "JointStateCheck", "check_image_size", "check_stamp", "encoded_image_size"]
