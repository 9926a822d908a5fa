"""`wam-ros interfaces`: the graph nodes' topics, services and parameters, read from them
(nodes/interfaces.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wam_ros.nodes.interfaces import full_markdown, graph_interfaces, readme_table, replace_block


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "interfaces", help="the graph nodes' topics, services and parameters, read from them")
    p.add_argument("--robot", default="cobot_magic")
    p.add_argument("--readme", type=Path, default=None,
                   help="rewrite the interface table between the markers of this README")
    p.add_argument("--doc", type=Path, default=None,
                   help="write the full tables (parameters included) to this markdown file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    nodes = graph_interfaces(args.robot)
    if args.readme is None and args.doc is None:
        print(full_markdown(nodes, args.robot))
        return 0
    if args.readme is not None:
        args.readme.write_text(replace_block(args.readme.read_text(), readme_table(nodes)))
    if args.doc is not None:
        args.doc.write_text(full_markdown(nodes, args.robot) + "\n")
    return 0
