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
