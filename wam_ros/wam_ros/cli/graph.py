"""`wam-ros graph`: print the node graph (what launch would start)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from wam_ros.bringup.graph import ARGUMENTS, GraphArgs, build_graph, build_sim_graph


# ---- `wam-ros graph`: print the graph (what launch would start) --------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="print the node graph and each node's command line")
    for name, (default, desc) in ARGUMENTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default, help=desc)
    p.add_argument("--sim", action="store_true", help="the simulation graph")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)


def _run(ns: argparse.Namespace) -> int:
    args = GraphArgs.from_strings({k: getattr(ns, k) for k in ARGUMENTS})
    graph = build_sim_graph(args) if ns.sim else build_graph(args)
    if ns.json:
        print(json.dumps([asdict(n) for n in graph], indent=2))
    else:
        for n in graph:
            print(f"{n.name}  ({n.executable})")
            print("  " + " ".join(n.command(os.path.basename(sys.executable))))
    return 0
