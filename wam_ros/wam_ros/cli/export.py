"""`wam-ros export`: a checkpoint to ONNX (and TensorRT engines)."""

from __future__ import annotations

import argparse

from wam_ros.model.export import run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (and TensorRT engines)")
    p.add_argument("checkpoint", help="checkpoint directory")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.set_defaults(func=run)
