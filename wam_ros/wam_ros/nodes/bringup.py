"""All four nodes composed in one process on one MultiThreadedExecutor.

    wam_bringup --ros-args --params-file config/wam_ros.yaml -p robot:=agibot_g1

The multi-process graph (launch files, tests) and this composed form run the same node classes.
"""

from __future__ import annotations

import sys

from wam_ros.nodes.common import run_nodes
from wam_ros.nodes.decoder_node import DecoderNode
from wam_ros.nodes.observation_node import ObservationNode
from wam_ros.nodes.policy_node import PolicyNode
from wam_ros.nodes.smoother_node import SmootherNode


def main(args: list[str] | None = None) -> int:
    return run_nodes([ObservationNode, PolicyNode, DecoderNode, SmootherNode], args, threads=6)


if __name__ == "__main__":
    sys.exit(main())
