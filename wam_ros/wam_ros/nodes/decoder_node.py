"""Decoder node: raw policy chunks (latent | delta | absolute) -> absolute, timed joint chunks.

All decoding is core.decoding.ChunkDecoder; the learned latent-action decoder is loaded from the
checkpoint only when the policy emits latent actions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from wam_ros.core.decoding import ChunkDecoder, DecodeError
from wam_ros.core.inputs import ClockJump, InputRefused, check_stamp
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import DecoderSettings
from wam_ros.core.types import Chunk
from wam_ros.nodes import conversions, topics
from wam_ros.nodes.common import chunk_callback, run_nodes, stamp_sec
from wam_ros.nodes.diagnostics import Diagnostics
from wam_ros.nodes.params import declare_settings
from wam_ros.paths import resolve_checkpoint
from wam_ros_msgs.msg import ActionChunk


class DecoderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam_decoder", **kwargs)
        s = self.settings = declare_settings(self, DecoderSettings)
        self.robot = RobotSpec.load(s.robot)
        self.decoder = ChunkDecoder(self.robot, latent_decoder=self._latent_decoder())
        self.diag = Diagnostics(self, "decoder")
        self.chunk_input = self.diag.add_input("chunks", dead_after_s=0.0)
        self.clock_jump = ClockJump()
        self.decoded = 0
        self.pub = self.create_publisher(ActionChunk, topics.CHUNK_JOINT, topics.CHUNK_QOS)
        # composed bringup: consumers in this process get each decoded Chunk directly
        self.local_sinks: list[Callable[[Chunk], None]] = []
        # own group: a latent decoder forward pass must not delay other callbacks
        self.chunk_sub = self.create_subscription(
            ActionChunk, topics.CHUNK_RAW, chunk_callback(self.diag, self.accept_chunk),
            topics.CHUNK_QOS, callback_group=MutuallyExclusiveCallbackGroup())

    def _latent_decoder(self):
        """The checkpoint's learned latent-action decoder, if its policy emits latents."""
        checkpoint = resolve_checkpoint(self.settings.checkpoint, self.robot.name)
        from wam_ros.model.checkpoint import read_checkpoint_config

        cfg, _ = read_checkpoint_config(checkpoint)
        if cfg.action_space != "latent":
            return None
        from wam_ros.model.latent_decoder import LatentActionDecoder

        return LatentActionDecoder.load(checkpoint).decode

    def accept_chunk(self, chunk: Chunk) -> None:
        """A raw policy chunk (from the topic, or in-process in the composed form)."""
        now = stamp_sec(self)
        if self.clock_jump.update(now):
            self.diag.health.reset_clock(now)
        try:
            check_stamp(chunk.stamp, now, self.settings.max_future_s, f"chunk {chunk.chunk_id}")
            # the policy's reference is the joint state it saw (joint units)
            out = self.decoder.decode(chunk)
        except InputRefused as exc:
            self.diag.refuse(exc.reason, str(exc), self.chunk_input, now)
            return
        except (ValueError, DecodeError) as exc:
            self.diag.refuse("bad_chunk", str(exc), self.chunk_input, now)
            return
        self.chunk_input.good(now)
        for sink in self.local_sinks:
            sink(out)
        self.pub.publish(conversions.chunk_to_msg(out))
        self.decoded += 1
        self.diag.set_value("decoded", self.decoded)


def main(args: list[str] | None = None) -> int:
    return run_nodes([DecoderNode], args, executor="auto", fast_exit=True)


if __name__ == "__main__":
    sys.exit(main())
