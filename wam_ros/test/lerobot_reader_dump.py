"""Runs in the side environment with LeRobot's own dataset reader (tools/lerobot_venv.sh), not
under pytest: loads a LeRobotDataset directory with `ledataset`'s LeRobotDataset and writes what
that reader yields to OUT.npz (arrays only, read back without pickle) and OUT.json.

    python lerobot_reader_dump.py DATASET_DIR OUT
"""

from __future__ import annotations

import json
import sys

import numpy as np
from ledataset.datasets.lerobot_dataset import LeRobotDataset


def main(root: str, out: str) -> None:
    ds = LeRobotDataset("local/wam_ros_export", root=root, video_backend="pyav")
    cams = list(ds.meta.video_keys)
    arrays: dict[str, list[np.ndarray]] = {}
    tasks: list[str] = []
    for i in range(len(ds)):
        item = ds[i]
        for key, value in item.items():
            if key == "task":
                tasks.append(value)
            elif key in cams:  # float in [0, 1], (3, H, W) -> uint8 (H, W, 3)
                img = (value.numpy().transpose(1, 2, 0) * 255.0).round().clip(0, 255)
                arrays.setdefault(key, []).append(img.astype(np.uint8))
            else:
                arrays.setdefault(key, []).append(np.asarray(value.numpy()))
    np.savez(out + ".npz", **{k: np.stack(v) for k, v in arrays.items()})
    episodes = [{"episode_index": int(e["episode_index"]), "length": int(e["length"]),
                 "from": int(e["dataset_from_index"]), "to": int(e["dataset_to_index"]),
                 "tasks": list(e["tasks"])} for e in ds.meta.episodes]
    meta = {"fps": ds.fps, "robot_type": ds.meta.robot_type, "num_frames": ds.num_frames,
            "num_episodes": ds.num_episodes, "codebase_version": ds.meta.info["codebase_version"],
            "video_keys": cams, "features": ds.meta.features,
            "tasks": list(ds.meta.tasks.index), "frame_tasks": tasks, "episodes": episodes,
            "stats_keys": sorted(ds.meta.stats) if ds.meta.stats else []}
    with open(out + ".json", "w") as f:
        json.dump(meta, f, default=list)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
