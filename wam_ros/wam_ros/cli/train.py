"""`wam-ros train`: its arguments; also the torchrun entry point:

    torchrun --nproc_per_node 4 -m wam_ros.cli.train --data ... --out ...   (DDP)
"""

from __future__ import annotations

import argparse
import sys

from wam_ros.model.train import run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the reference World Action Model")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, action="append",
                   help="episode dataset directory; repeat it to train on several datasets of "
                        "the robot as one (one per task, say)")
    p.add_argument("--config", default="default",
                   help="tiny | default | path to a YAML file (default: default)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--resume", action="store_true", help="continue from --out's train state")
    p.add_argument("--init", metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights, model config and "
                        "normalisation statistics with a fresh optimizer and schedule (a "
                        "shipped checkpoint, say, on new data of the same robot)")
    p.add_argument("--lr", type=float, help="override train.lr (peak learning rate)")
    p.add_argument("--new-stats", action="store_true",
                   help="--init: normalise with statistics of the new data instead of the "
                        "checkpoint's (needed where the data leaves their range: a new task)")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--batch-size", type=int, help="override train.batch_size")
    p.add_argument("--action-space", choices=("absolute", "delta", "latent"),
                   help="override model.action_space")
    p.add_argument("--rest-tail-tolerance", type=float,
                   help="override train.rest_tail_tolerance (episodes' rest tails not trained on)")
    p.add_argument("--object-loss", type=float,
                   help="override train.object_loss (privileged object-pose head; needs a "
                        "dataset that records object poses)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="override train.ema_decay: ship an exponential moving average of the "
                        "weights (0.999, say; 0: the trained weights as they are)")
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:  # torchrun entry point
    p = argparse.ArgumentParser(prog="wam_ros.cli.train")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
