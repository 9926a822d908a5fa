"""What every node's main() shares: init, executor, clean shutdown, start-up errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from wam_ros.core.config import ConfigError


def run_nodes(factories: list[Callable[[], Node]], args: list[str] | None = None,
              threads: int = 4, link: Callable[..., None] | None = None) -> int:
    """Create the nodes (then `link(*nodes)`, if given) and spin them on one
    MultiThreadedExecutor until shutdown.

    Several threads because nodes put slow work (inference, decoding) in their own callback
    groups; one thread would let that work starve the control timers.
    """
    # A callback waiting for the GIL behind another thread's Python code (the inference
    # worker's pre/post-processing) waits up to the switch interval: 5 ms by default.
    sys.setswitchinterval(0.001)
    realtime = _realtime_from_env()
    rclpy.init(args=args if args is not None else sys.argv)
    nodes: list[Node] = []
    executor = MultiThreadedExecutor(num_threads=threads)
    try:
        for make in factories:
            nodes.append(make())
        if link is not None:  # composed: wire the nodes to each other before anything runs
            link(*nodes)
        if realtime:
            nodes[0].get_logger().warning(realtime, once=True)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except ConfigError as exc:
        # one readable line for the operator, no traceback
        print(f"[wam_ros] configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


RT_PRIORITY_ENV = "WAM_ROS_RT_PRIORITY"


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
        return f"{RT_PRIORITY_ENV}={value!r} ignored: expected a priority 1..99"
    why = set_realtime(priority)
    return f"{RT_PRIORITY_ENV}={priority} not applied: {why}; running at normal priority" \
        if why else ""


def unless_shut_down(node: Node, callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback` for a timer or thread of `node` that ends quietly when the context has shut
    down under it: rclpy's SIGINT handler shuts the context down while other executor threads
    may still be publishing ("publisher's context is invalid"). Errors while the context is up
    still raise."""

    def guarded(*args: Any) -> Any:
        try:
            return callback(*args)
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

