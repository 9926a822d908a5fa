"""What every node's main() shares: init, executor, clean shutdown, start-up errors."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)
from rclpy.node import Node

from wam_ros.core.config import ConfigError
from wam_ros.core.settings import RT_PRIORITY_ENV, RT_PRIORITY_MAX

EXECUTOR_ENV = "WAM_ROS_EXECUTOR"
EXECUTORS = ("events", "multi_threaded")


def events_executor_available() -> bool:
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401  (Kilted; Jazzy 7.1.6 too)
    except ImportError:
        return False
    return True


def graph_executor() -> str:
    """The executor the camera-to-command nodes spin on: $WAM_ROS_EXECUTOR, else rclpy's
    EventsExecutor where this rclpy has it, else the MultiThreadedExecutor.

    The EventsExecutor dispatches callbacks from C++ on one thread, without the Python wait-set
    rebuild that rclpy's executors do per callback. On two cores that rebuild (six threads
    taking turns on the GIL) was the largest cost of the whole stack: it took CPU from
    inference and delayed camera frames by up to 140 ms (the pipeline bench in README).
    One thread suffices because nothing slow runs in a callback: inference has its own worker
    thread and every other callback takes a few milliseconds at most.
    """
    kind = os.environ.get(EXECUTOR_ENV, "").strip()
    if kind:
        if kind not in EXECUTORS:
            raise ConfigError(f"{EXECUTOR_ENV}={kind!r}; allowed: {', '.join(EXECUTORS)}")
        if kind == "events" and not events_executor_available():
            raise ConfigError(f"{EXECUTOR_ENV}=events, but this rclpy has no EventsExecutor "
                              "(rclpy.experimental; Humble has none)")
        return kind
    return "events" if events_executor_available() else "multi_threaded"


class PoolExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor without its busy loop: after handing a callback to the
    thread pool, the spin thread waits until a worker has started it.

    rclpy's executor (9.1.2 and Jazzy 7.1.6) offers every task that has not started yet as
    ready work again, so while a submitted callback waits in the pool's queue the spin thread
    neither blocks in the wait set nor lets go of the GIL for long: it resubmits the same
    task in a loop, and the workers it waits for get ever less time (rclpy issue 1452). In full
    `make test` runs on 2 cores, processes on that executor spun at about 94 % CPU while the
    multi-threaded graph test, the recorder test and the lifecycle test hung (never alone);
    with this executor those runs pass. Waiting for the start costs nothing while a worker
    is free, and while none is, no callback could run sooner anyway."""

    # how often a spin thread waiting for a free worker checks for shutdown
    START_POLL_S = 0.1

    def _spin_once_impl(self, timeout_sec: Any = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(
                timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        started = threading.Event()

        def run() -> None:
            started.set()
            handler()

        self._executor.submit(run)
        self._futures.append(handler)
        while not started.wait(self.START_POLL_S):
            if self._is_shutdown or not self._context.ok():
                break
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise what the callback raised


def make_executor(kind: str, threads: int = 4, context: Any = None) -> Executor:
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    if kind == "multi_threaded":
        return PoolExecutor(num_threads=threads, context=context)
    raise ValueError(f"executor {kind!r}; allowed: {', '.join(EXECUTORS)}")


def spin(executor: Executor) -> None:
    """Spin until rclpy shuts down. (The EventsExecutor's own spin() in rclpy 9.1 does not run
    timers; spinning it once at a time does.) A shutdown (SIGINT) that lands while the
    executor builds its wait set makes rcl fail with "context is not valid": that is the end of
    the spin, not an error (seen once in make test as a node process exiting with 1)."""
    while rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except Exception:
            if rclpy.ok():
                raise
            return


class OneShot:
    """`callback` run once on the node's executor, `after` seconds from `arm(after)` (called
    from any thread; arming again before it ran moves it). A cancelled timer that is reset:
    the EventsExecutor has no guard conditions, and a reset timer wakes either executor (median
    under 1 ms here). The timer is cancelled before the callback runs, so an `arm` from inside
    or during the callback is not lost."""

    def __init__(self, node: Node, callback: Callable[[], None], callback_group: Any = None
                 ) -> None:
        self._callback = callback
        self._timer = node.create_timer(1e-4, self._run, callback_group=callback_group)
        self._timer.cancel()

    # shortest delay: a timer that is due again before its callback cancelled it fires again
    MIN_DELAY_NS = 100_000

    def arm(self, after: float = 0.0) -> None:
        period = max(self.MIN_DELAY_NS, round(after * 1e9))
        if period != self._timer.timer_period_ns:
            self._timer.timer_period_ns = period
        self._timer.reset()

    def _run(self) -> None:
        self._timer.cancel()
        self._callback()


def run_nodes(factories: list[Callable[[], Node]], args: list[str] | None = None,
              threads: int = 4, link: Callable[..., None] | None = None,
              executor: str = "multi_threaded", fast_exit: bool = False) -> int:
    """Create the nodes (then `link(*nodes)`, if given) and spin them on one executor
    (`executor`: "events", "multi_threaded", or "auto": graph_executor(), what the graph's
    nodes use) until shutdown.

    The multi-threaded executor runs `threads` threads: nodes that block in a callback (the
    simulator's reset, the recorder's writes) put that work in callback groups of its own.

    fast_exit: once the nodes are closed and rclpy is shut down, end the process at once
    (os._exit) instead of returning into the interpreter's teardown, which launch would
    otherwise wait for: torch's took 1.5-5 s on a loaded 2-core machine, and even a process
    without it (the smoother) once outlasted the 5 s launch waits after SIGINT before it
    escalates to SIGTERM and reports the node as died (exit -15). For the graph's nodes,
    which write no files; never for the recorder. Only for a node's main(): nothing after it
    runs. (A crash still unwinds normally, with its traceback.)
    """
    code = _run_nodes(factories, args, threads, link, executor)
    if fast_exit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_nodes(factories: list[Callable[[], Node]], args: list[str] | None, threads: int,
               link: Callable[..., None] | None, executor: str) -> int:
    # A callback waiting for the GIL behind another thread's Python code (the inference
    # worker's pre/post-processing) waits up to the switch interval: 5 ms by default.
    sys.setswitchinterval(0.001)
    keep_freed_memory()
    realtime = _realtime_from_env()
    rclpy.init(args=args if args is not None else sys.argv)
    nodes: list[Node] = []
    spinner: Executor | None = None
    try:
        spinner = make_executor(graph_executor() if executor == "auto" else executor, threads)
        for make in factories:
            nodes.append(make())
        if link is not None:  # composed: wire the nodes to each other before anything runs
            link(*nodes)
        if realtime:
            nodes[0].get_logger().warning(realtime, once=True)
        for node in nodes:
            spinner.add_node(node)
        spin(spinner)
    except ConfigError as exc:
        # one readable line for the operator, no traceback
        print(f"[wam_ros] configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT while the nodes were being made (a respawned node stopped with the launch):
        # rcl refuses to create entities on the shut-down context; that is the end, not a fault
        if rclpy.ok():
            raise
    finally:
        if spinner is not None:
            spinner.shutdown(timeout_sec=1.0)
        for node in nodes:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 128 << 20) -> bool:
    """glibc: buffers up to `mmap_threshold` come from the heap, and up to `trim_threshold` of
    freed heap is kept for the next allocation instead of being returned to the kernel.

    Every raw camera frame is taken into a new 0.9 MB buffer (and copied into a Python bytes
    object). With glibc's adaptive defaults the freed heap top was handed back to the kernel
    after each frame in some runs: each next buffer then faulted in its 225 pages again, which
    about doubled the observation node's CPU for the same work
    (docs/results/2026-12-06-launched-graph-after-page-faults.md). Returns False where the C
    library has no mallopt (not glibc): nothing changes there."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def _realtime_from_env() -> str:
    """WAM_ROS_RT_PRIORITY=N (1..99): this process's threads (DDS, executor) run SCHED_FIFO at
    N, so the control path preempts inference, drivers and everything else at normal priority;
    the policy node moves its inference threads back to normal (runtime.threads). Returns a
    warning to log ("" when it worked or was not asked for)."""
    value = os.environ.get(RT_PRIORITY_ENV, "").strip()
    if not value or value == "0":
        return ""
    from wam_ros.runtime.threads import set_realtime

    try:
        priority = int(value)
    except ValueError:
        return f"{RT_PRIORITY_ENV}={value!r} ignored: expected a priority 1..{RT_PRIORITY_MAX}"
    why = set_realtime(priority)
    return (f"{RT_PRIORITY_ENV}={priority} (launch argument realtime_priority) not applied: "
            f"{why}; running at normal priority. Grant an rtprio limit (limits.conf) or "
            "CAP_SYS_NICE, or launch with realtime_priority:=0") if why else ""


def unless_shut_down(node: Node, callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback` for a timer or thread of `node` that ends quietly when the context has shut
    down under it: rclpy's SIGINT handler shuts the context down while other executor threads
    may still be publishing ("publisher's context is invalid"). Errors while the context is up
    still raise."""

    # no parameters: rclpy's EventsExecutor hands a timer callback that takes one a TimerInfo
    def guarded() -> Any:
        try:
            return callback()
        except Exception:
            if node.context.ok():
                raise
            return None

    return guarded


def stamp_sec(node: Node) -> float:
    """The node's clock (sim time when use_sim_time) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


def chunk_callback(diag, accept: Callable[[object], None]) -> Callable[[object], None]:
    """ActionChunk message -> core Chunk -> `accept`; a malformed message is refused (counted
    and logged once in /diagnostics). The nodes' `accept_chunk` also takes chunks handed over
    in memory by the composed bringup."""
    from wam_ros.nodes import conversions

    def on_chunk(msg) -> None:
        try:
            chunk = conversions.msg_to_chunk(msg)
        except ValueError as exc:
            diag.refuse("bad_chunk", str(exc))
            return
        accept(chunk)

    return on_chunk

