"""`wam-ros dataset`: episode bags -> the training dataset `wam-ros train` reads.

    wam-ros dataset build episodes/ --out data/cups --image-size 224
    wam-ros dataset build ep1 ep2 ep3 --out data/cups --robot cobot_magic --task "stack the cups"
    wam-ros dataset info episodes/ep1
    wam-ros dataset export-lerobot data/cups --out lerobot/cups        # LeRobotDataset v3.0
    wam-ros dataset import-lerobot lerobot/cups --out data/cups2 --robot cobot_magic [--map M]
    wam-ros dataset import-hdf5 aloha/episode_*.hdf5 --out data/aloha --robot cobot_magic

`build` time-aligns each bag to the robot's action rate (images resized to the model's input,
actions from the teleop topics in absolute joint positions; `space: delta` sources are turned
into absolute ones), prints a per-episode summary (length, rates, gaps, dropped / late) and
appends to DIR when it exists (same robot, cameras, image size). `wam-ros train --action-space
absolute|delta` then chooses what the model learns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or HxW") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or HxW, each >= 8")
    return parts[0], parts[1]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build, import and export training datasets",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    b = dsub.add_parser("build", help="bags -> dataset")
    b.add_argument("bags", nargs="+", help="bag directories / files, or directories of bags")
    b.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    b.add_argument("--robot", default="", help="robot config (default: the bag's metadata)")
    b.add_argument("--image-size", type=_size, default=(224, 224),
                   help="stored image size, N or HxW: the model's input (default 224)")
    b.add_argument("--resize", choices=("center_crop", "resize"), default="center_crop")
    b.add_argument("--rate", type=float, default=0.0,
                   help="frames per second (default: the robot's action_rate_hz)")
    b.add_argument("--action-source", choices=("auto", "teleop", "follower"), default="auto",
                   help="teleop topics, or where the follower went (rollout bags)")
    b.add_argument("--task", default="", help="task for every episode (default: the bag's)")
    b.add_argument("--skip-incomplete", action="store_true",
                   help="leave out bags whose recorder stopped abruptly")
    b.add_argument("--only-success", action="store_true", help="only episodes marked success")
    b.add_argument("--no-partial", action="store_true",
                   help="ignore an unfinished segment left by a killed recorder")
    b.add_argument("--image-format", choices=("raw", "jpeg"), default="raw",
                   help="store images raw or as one JPEG per frame (random access kept, "
                        "about 5x smaller at 96x96)")
    b.add_argument("--json", help="write the per-episode summaries here")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)
    x = dsub.add_parser("export-lerobot", help="dataset -> LeRobotDataset v3.0 (parquet + mp4)")
    x.add_argument("data", nargs="+",
                   help="our dataset directory, or episode bags (built first, as `dataset "
                        "build` does, into a temporary dataset)")
    x.add_argument("--out", required=True, help="LeRobot dataset directory to create")
    x.add_argument("--robot", default="", help="bags: robot config (default: the bag's)")
    x.add_argument("--image-size", type=_size, default=(224, 224),
                   help="bags: stored image size, N or HxW (default 224)")
    x.add_argument("--task", default="", help="bags: task for every episode")
    x.add_argument("--codec", default="auto",
                   help="video encoder: auto (LeRobot's libsvtav1 where available), "
                        "libsvtav1, libx264, h264, mpeg4")
    x.add_argument("--crf", type=int, default=30, help="video quality, lower is better "
                   "(default 30, LeRobot's)")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=run_export_lerobot)
    m = dsub.add_parser("import-lerobot", help="LeRobotDataset v3.0 / v2.1 -> dataset")
    m.add_argument("src", help="LeRobot dataset directory (meta/info.json inside)")
    m.add_argument("--out", required=True, help="dataset directory to create")
    m.add_argument("--robot", required=True, help="robot config the data is for")
    m.add_argument("--map", help="key map YAML: features -> joints, grippers, cameras "
                   "(docs/dataset.md)")
    m.add_argument("--image-size", type=_size, help="stored image size, N or HxW "
                   "(default: the source's)")
    m.add_argument("--resize", choices=("center_crop", "resize"), default="center_crop")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=run_import_lerobot)
    h = dsub.add_parser("import-hdf5", help="ALOHA-style HDF5 episodes -> dataset")
    h.add_argument("episodes", nargs="+", help="episode .hdf5 files (or directories of them)")
    h.add_argument("--out", required=True, help="dataset directory to create")
    h.add_argument("--robot", required=True, help="robot config the data is for")
    h.add_argument("--map", help="key map YAML (default: the shipped ACT/ALOHA map of the "
                   "robot, config/dataset_maps/aloha_<robot>.yaml)")
    h.add_argument("--image-size", type=_size, default=(224, 224),
                   help="stored image size, N or HxW (default 224)")
    h.add_argument("--resize", choices=("center_crop", "resize"), default="center_crop")
    h.add_argument("--task", default="", help="task of every episode (default: the map's or "
                   "the file's)")
    h.add_argument("--quiet", action="store_true", help="no progress bar")
    h.set_defaults(func=run_import_hdf5)
    r = dsub.add_parser("recode", help="copy a dataset with its images stored raw or as JPEG")
    r.add_argument("data", help="our dataset directory")
    r.add_argument("--out", required=True, help="dataset directory to create")
    r.add_argument("--image-format", choices=("raw", "jpeg"), default="jpeg",
                   help="jpeg: one JPEG per frame (random access kept, ~5x smaller at 96x96)")
    r.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run_recode)
    i = dsub.add_parser("info", help="what a bag holds (topics, counts, episode metadata)")
    i.add_argument("bags", nargs="+")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_build(args: argparse.Namespace) -> int:
    from wam_ros.core.config import ConfigError
    from wam_ros.data.convert import BuildOptions, build_dataset, summaries_json

    try:
        options = BuildOptions(robot=args.robot, image_size=args.image_size,
                               resize_mode=args.resize, rate_hz=args.rate,
                               action_source=args.action_source, task=args.task,
                               include_partial=not args.no_partial,
                               skip_incomplete=args.skip_incomplete,
                               only_success=args.only_success,
                               image_format=args.image_format)
        summaries = build_dataset(args.bags, args.out, options, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(summaries_json(summaries))
    return 0 if any(not s.skipped for s in summaries) else 1


def run_export_lerobot(args: argparse.Namespace) -> int:
    import tempfile

    from wam_ros.core.config import ConfigError
    from wam_ros.data.convert import BuildOptions, build_dataset
    from wam_ros.data.lerobot import ExportOptions, export_lerobot

    try:
        options = ExportOptions(codec=args.codec, crf=args.crf)
        if len(args.data) == 1 and (Path(args.data[0]) / "index.json").is_file():
            export_lerobot(args.data[0], args.out, options, progress=not args.quiet)
            return 0
        if Path(args.out).exists():  # before the bags are built
            raise FileExistsError(f"{args.out} exists already; choose a new --out")
        with tempfile.TemporaryDirectory(prefix="wam_export_") as tmp:
            built = Path(tmp) / "dataset"
            summaries = build_dataset(
                args.data, built, BuildOptions(robot=args.robot, image_size=args.image_size,
                                               task=args.task), progress=not args.quiet)
            if not any(not s.skipped for s in summaries):
                raise ValueError("no bag could be built into a dataset (see above)")
            export_lerobot(built, args.out, options, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_import_lerobot(args: argparse.Namespace) -> int:
    from wam_ros.core.robot import RobotSpec
    from wam_ros.data.lerobot import import_lerobot

    try:
        import_lerobot(args.src, args.out, RobotSpec.load(args.robot), args.map,
                       args.image_size, args.resize, progress=not args.quiet)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_import_hdf5(args: argparse.Namespace) -> int:
    from wam_ros.core.robot import RobotSpec
    from wam_ros.data.hdf5 import import_hdf5

    try:
        import_hdf5(args.episodes, args.out, RobotSpec.load(args.robot), args.map,
                    args.image_size, args.resize, task=args.task, progress=not args.quiet)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_recode(args: argparse.Namespace) -> int:
    from wam_ros.data.dataset_writer import recode_dataset

    try:
        recode_dataset(args.data, args.out, args.image_format, args.quality,
                       progress=not args.quiet)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_info(args: argparse.Namespace) -> int:
    from wam_ros.data.bag_reader import open_bag
    from wam_ros.data.convert import find_bags

    try:
        paths = find_bags(args.bags)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        bag = open_bag(path, include_partial=True)
        print(f"{path}  ({bag.storage})")
        for key, value in bag.custom.items():
            print(f"  {key}: {value}")
        for topic, msgtype in sorted(bag.topics.items()):
            print(f"  {topic:40s} {msgtype:38s} {bag.counts.get(topic, 0):7d}")
        if bag.partial_messages:
            print(f"  + {bag.partial_messages} messages in an unfinished segment")
    return 0


__all__ = ["register", "run_build", "run_export_lerobot", "run_import_hdf5", "run_import_lerobot",
           "run_info", "run_recode"]
