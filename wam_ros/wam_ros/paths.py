"""Where the package's data (config/, urdf/, launch/) lives: source tree or installed share/."""

from __future__ import annotations

import functools
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]  # wam_ros/ (the ament package folder)


@functools.cache
def share_dir() -> Path:
    """The folder holding config/, urdf/ and launch/.

    In a source checkout (editable install, tests) that is the package folder itself; after
    `colcon build` it is the package's share directory found through the ament index.
    """
    if (_SOURCE_ROOT / "config").is_dir() and (_SOURCE_ROOT / "package.xml").is_file():
        return _SOURCE_ROOT
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("wam_ros"))


def config_dir() -> Path:
    return share_dir() / "config"


def robots_dir() -> Path:
    return config_dir() / "robots"


def checkpoints_dir() -> Path:
    return share_dir() / "checkpoints"


def task_checkpoint(robot: str, task: str) -> Path | None:
    """`checkpoints/<robot>_<task>` where one is shipped for that simulated task, else None."""
    specific = checkpoints_dir() / f"{robot}_{task}"
    return specific if task and (specific / "config.yaml").is_file() else None


def default_checkpoint(robot: str, task: str = "") -> Path:
    """The checkpoint shipped for the robot: the task's own (`task_checkpoint`), else
    `checkpoints/<robot>` (trained on pick_place)."""
    return task_checkpoint(robot, task) or checkpoints_dir() / robot


def resolve_checkpoint(checkpoint: str, robot: str, task: str = "") -> Path:
    """A checkpoint directory: the given one, or the default shipped for the robot (and the
    simulated task, `default_checkpoint`)."""
    from wam_ros.core.config import ConfigError

    path = Path(checkpoint).expanduser() if checkpoint else default_checkpoint(robot, task)
    if not (path / "config.yaml").is_file():
        what = f"checkpoint {checkpoint!r}" if checkpoint else (
            f"no checkpoint given and no default checkpoint for robot {robot!r}")
        raise ConfigError(f"{what}: {path} has no config.yaml (a checkpoint directory holds "
                          "model.safetensors, config.yaml and normalisation stats)")
    return path
