"""Inference threads run at a raised nice value; the thread that asks is the only one touched."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from wam_ros.runtime.threads import lower_priority, lowered_new_threads, thread_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="per-thread nice values are a Linux feature")


def _in_thread(fn):
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()))
    t.start()
    t.join()
    return box["v"]


def test_lower_priority_affects_only_the_calling_thread() -> None:
    main_before = thread_nice()
    nice = _in_thread(lambda: (lower_priority(main_before + 5), thread_nice())[1])
    assert nice == main_before + 5
    assert thread_nice() == main_before  # the caller's thread is untouched


def test_never_lowers_a_nice_value() -> None:
    base = thread_nice()

    def work() -> tuple[bool, int]:
        lower_priority(base + 7)
        return lower_priority(base + 3), thread_nice()

    ok, nice = _in_thread(work)
    assert ok and nice == base + 7
    assert not lower_priority(0)


def test_threads_started_in_the_block_are_lowered() -> None:
    base = thread_nice()
    started, stop = threading.Event(), threading.Event()
    seen: dict = {}

    def pool_worker() -> None:  # stands in for a backend's intra-op thread
        started.set()
        stop.wait(5)
        seen["nice"] = thread_nice()

    with lowered_new_threads(base + 4) as created:
        t = threading.Thread(target=pool_worker)
        t.start()
        started.wait(5)
    stop.set()
    t.join()
    assert t.native_id in created
    assert seen["nice"] == base + 4
    assert thread_nice() == base
    assert os.getpriority(os.PRIO_PROCESS, 0) == base


def _in_realtime_thread(priority: int, body) -> dict[str, object]:
    """Run `body(out)` in a thread of its own under SCHED_FIFO `priority` (the test process
    stays normal); skips where real-time scheduling is not allowed. Returns what it wrote."""
    from wam_ros.runtime.threads import set_realtime

    out: dict[str, object] = {}

    def run() -> None:
        out["why"] = set_realtime(priority)
        if not out["why"]:
            body(out)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if out["why"]:
        pytest.skip(f"no real-time scheduling here: {out['why']}")
    return out


def test_realtime_control_threads_and_inference_threads_back_to_normal() -> None:
    """A SCHED_FIFO thread's children inherit it; lower_priority (what the policy node does to
    its inference threads) puts a thread back under the normal policy with the nice value."""
    from wam_ros.runtime.threads import realtime_priority, set_realtime

    assert set_realtime(1000) != ""  # out of range: refused with a reason, nothing changed

    def control(out: dict[str, object]) -> None:
        out["control"] = realtime_priority()

        def inference() -> None:
            out["inherited"] = realtime_priority()
            lower_priority(7)
            out["demoted"] = (realtime_priority(), thread_nice())

        t = threading.Thread(target=inference)
        t.start()
        t.join()
        out["control_after"] = realtime_priority()

    out = _in_realtime_thread(5, control)
    assert out["control"] == 5 and out["inherited"] == 5
    assert out["demoted"] == (0, 7) and out["control_after"] == 5
    assert realtime_priority() == 0


def test_off_realtime_runs_a_block_at_normal_priority_and_restores_it() -> None:
    from wam_ros.runtime.threads import off_realtime, realtime_priority

    with off_realtime() as restore:  # a normal thread: nothing changes
        assert restore == 0 and realtime_priority() == 0
    assert realtime_priority() == 0

    def control(out: dict[str, object]) -> None:
        try:
            with off_realtime() as restore:
                out["inside"] = (restore, realtime_priority())
                raise RuntimeError("a failed load")
        except RuntimeError:
            pass
        out["after"] = realtime_priority()

    out = _in_realtime_thread(7, control)
    assert out["inside"] == (7, 0) and out["after"] == 7


def test_off_realtime_runs_the_heavy_part_of_a_realtime_worker_niced() -> None:
    """The policy's inference worker under a real-time control path: it waits and hands over
    at the control priority, and runs the model under the normal policy, niced."""
    from wam_ros.runtime.threads import off_realtime, realtime_priority

    base = thread_nice()
    with off_realtime(base + 3):  # no real-time control path: nothing changes here
        assert realtime_priority() == 0 and thread_nice() == base

    def worker(out: dict[str, object]) -> None:
        with off_realtime(base + 3):
            out["model"] = (realtime_priority(), thread_nice())
        out["hand_over"] = realtime_priority()

    out = _in_realtime_thread(6, worker)
    assert out["model"] == (0, base + 3) and out["hand_over"] == 6
