"""`wam-ros` command line: one sub-command per job.

Each job lives in its own module exposing `register(subparsers)`; modules are imported lazily so
`wam-ros --help` stays fast and a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable

# sub-command name -> module that defines register(subparsers) and sets args.func
COMMANDS: dict[str, str] = {
    "robots": "wam_ros.cli.robots",
    "graph": "wam_ros.cli.graph",
    "demo": "wam_ros.cli.demo",
    "eval": "wam_ros.cli.eval",
    "train": "wam_ros.cli.train",
    "export": "wam_ros.cli.export",
    "bench": "wam_ros.cli.bench",
    "sim": "wam_ros.cli.sim",
    "record": "wam_ros.cli.record",
    "dataset": "wam_ros.cli.dataset",
    "replay": "wam_ros.cli.replay",
    "serve": "wam_ros.cli.serve",
    "interfaces": "wam_ros.cli.interfaces",
}


def _ensure_localhost_discovery() -> None:
    # Every path that may touch DDS keeps discovery on this machine unless the user chose.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wam-ros", description="World Action Models on dual-arm robots with ROS 2."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=f"(run `wam-ros {name} -h`)")
            continue
        importlib.import_module(module).register(sub)
    return parser


def _exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM (a supervisor, a CI time-out, `kill PID`) unwind like an error, so that
    `finally` blocks run and stop the node processes a command started: they run in sessions
    of their own, so the signal does not reach them, and Python's default action would leave
    them running. Returns what restores the previous handler (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    _ensure_localhost_discovery()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the chosen command's module (heavy ones pull in torch).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    restore = _exit_on_sigterm()
    try:
        return int(args.func(args) or 0)
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
