"""CPU priority of inference threads (ROS-free, Linux).

On a small on-board computer the model shares the cores with the control path (observation
sync, decoding, smoothing, command publication). Inference is throughput work that takes tens of
milliseconds anyway; a control callback is latency work that takes a fraction of one. Running
the inference threads at a higher nice value lets the kernel preempt them as soon as a control
callback wakes up, instead of making that callback wait for its fair share behind a busy model.

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


def lower_priority(nice: int, tid: int | None = None) -> bool:
    """Raise the nice value of one thread (default: the calling one) to `nice`; never lowers
    it. False where the platform does not allow it."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    tid = threading.get_native_id() if tid is None else tid
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) >= nice:
            return True
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    return True


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


def thread_nice(tid: int | None = None) -> int:
    tid = threading.get_native_id() if tid is None else tid
    return os.getpriority(os.PRIO_PROCESS, tid)


__all__ = ["lower_priority", "lowered_new_threads", "thread_nice"]
