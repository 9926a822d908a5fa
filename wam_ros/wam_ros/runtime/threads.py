"""CPU priority of inference threads (ROS-free, Linux).

On a small on-board computer the model shares the cores with the control path (observation
sync, decoding, smoothing, command publication). Inference is throughput work that takes tens of
milliseconds anyway; a control callback is latency work that takes a fraction of one. Running
the inference threads at a higher nice value lets the kernel preempt them as soon as a control
callback wakes up, instead of making that callback wait for its fair share behind a busy model.

The control path may also run under the real-time policy (SCHED_FIFO, `set_realtime`, what
ros2_control's update loop uses on a robot): it then preempts every normal thread at once.
Inference must never run real-time, so `lower_priority` first moves a thread back to the normal
policy (allowed without privilege).

Linux keeps the nice value per thread (`setpriority(PRIO_PROCESS, tid, n)` affects one thread)
and a new thread inherits its creator's, so the backend's own worker pools (ONNX Runtime
intra-op threads, torch's pool) are caught either by creating them from a lowered thread or by
lowering the threads that appeared while the backend was loaded. Raising the nice value needs no
privilege; lowering it back would, so nothing here ever does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _task_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:  # not Linux: nothing to adjust
        return set()


def set_realtime(priority: int) -> str:
    """The calling thread (and the threads it starts from now on) under SCHED_FIFO at
    `priority` (1..99). Returns "" on success, else why not (no privilege: an rtprio limit in
    /etc/security/limits.conf or CAP_SYS_NICE is needed)."""
    if not hasattr(os, "sched_setscheduler"):
        return "this platform has no real-time scheduling"
    lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not lo <= priority <= hi:
        return f"priority {priority} outside {lo}..{hi}"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"SCHED_FIFO {priority} refused ({exc.strerror})"
    return ""


def realtime_priority(tid: int | None = None) -> int:
    """SCHED_FIFO / SCHED_RR priority of a thread; 0 for a normal one."""
    tid = threading.get_native_id() if tid is None else tid
    try:
        if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
            return os.sched_getparam(tid).sched_priority
    except (OSError, AttributeError):
        pass
    return 0


def lower_priority(nice: int, tid: int | None = None) -> bool:
    """Move one thread (default: the calling one) off real-time scheduling and raise its nice
    value to `nice`; never lowers it. False where the platform does not allow it."""
    tid = threading.get_native_id() if tid is None else tid
    if realtime_priority(tid):
        try:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            return False
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) >= nice:
            return True
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    return True


@contextmanager
def off_realtime(nice: int = 0) -> Iterator[int]:
    """A real-time thread runs the block under the normal policy, at nice value `nice` or
    higher, and returns to its SCHED_FIFO priority afterwards: loading a model (minutes for a
    TensorRT build) or running inference on a thread that waits and hands results over
    real-time. Yields the priority it returns to; on a normal thread (0) nothing changes."""
    priority = realtime_priority()
    if priority:
        lower_priority(nice)
        if realtime_priority():  # not allowed to leave it: nothing to restore
            priority = 0
    try:
        yield priority
    finally:
        if priority:
            set_realtime(priority)


@contextmanager
def lowered_new_threads(nice: int) -> Iterator[list[int]]:
    """Threads started inside the block (e.g. a backend's worker pool) get nice value `nice`.
    Yields the list of their ids, filled when the block ends."""
    before = _task_ids()
    created: list[int] = []
    try:
        yield created
    finally:
        for tid in sorted(_task_ids() - before):
            if lower_priority(nice, tid):
                created.append(tid)


def _realtime_threads() -> dict[int, int]:
    return {tid: prio for tid in _task_ids() if (prio := realtime_priority(tid))}


@contextmanager
def keep_priorities() -> Iterator[None]:
    """Native code run inside the block leaves no thread more real-time than it was: the
    calling thread gets its policy back, other threads it raised or started real-time go to
    the normal policy. For libraries that raise threads on their own where they may (the
    SVT-AV1 encoder puts its worker threads and its caller under SCHED_FIFO 99 when run as
    root: a dataset export would preempt ros2_control on the robot's computer)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    caller = threading.get_native_id()
    before = _realtime_threads()
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (
                policy, param.sched_priority):
            try:
                os.sched_setscheduler(0, policy, param)
            except OSError:
                pass
        for tid, prio in _realtime_threads().items():
            if tid != caller and prio > before.get(tid, 0):
                lower_priority(0, tid)


def thread_nice(tid: int | None = None) -> int:
    tid = threading.get_native_id() if tid is None else tid
    return os.getpriority(os.PRIO_PROCESS, tid)


__all__ = ["keep_priorities", "lower_priority", "lowered_new_threads",
           "off_realtime", "realtime_priority", "set_realtime", "thread_nice"]
