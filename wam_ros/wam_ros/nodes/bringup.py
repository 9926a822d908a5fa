"""All four nodes in one process, handing observations and chunks over in memory.

    wam_bringup --ros-args --params-file config/wam_ros.yaml -p robot:=agibot_g1

The same node classes as the multi-process graph, with the same parameters and topics: every
node still publishes what it produces (for recording, introspection and the bench), but the
next node in the chain gets it by a direct call instead of through DDS, and drops its own
subscription to that topic. That removes three serialise / transport / deserialise / wake-up
hops from the camera-to-command path. Chunks leave the policy from an executor thread (the
inference worker only queues them), so decoding and the first command run at normal priority.
"""

from __future__ import annotations

import sys

from wam_ros.nodes.common import run_nodes
from wam_ros.nodes.decoder_node import DecoderNode
from wam_ros.nodes.observation_node import ObservationNode
from wam_ros.nodes.policy_node import PolicyNode
from wam_ros.nodes.smoother_node import SmootherNode


def link(observation: ObservationNode, policy: PolicyNode, decoder: DecoderNode,
         smoother: SmootherNode) -> None:
    """observation -> policy -> decoder -> smoother by direct calls."""
    policy.destroy_subscription(policy.observation_sub)
    decoder.destroy_subscription(decoder.chunk_sub)
    smoother.destroy_subscription(smoother.chunk_sub)
    if policy.contract is not None:  # (configured: autostart)
        observation.apply_contract(policy.contract)
    observation.local_sinks.append(policy.accept_observation)
    policy.local_sinks.append(decoder.accept_chunk)
    decoder.local_sinks.append(smoother.accept_chunk)


def main(args: list[str] | None = None) -> int:
    return run_nodes([ObservationNode, PolicyNode, DecoderNode, SmootherNode], args, threads=6,
                     link=link, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
