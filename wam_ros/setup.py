"""ament_python package of wam_ros; also installs with pip (editable) for development."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "wam_ros"
HERE = Path(__file__).resolve().parent


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install `folder` below share/wam_ros, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            entries.setdefault(str(Path("share", PACKAGE, rel.parent)), []).append(str(rel))
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("urdf"),
        *tree("checkpoints"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="wam_ros maintainers",
    maintainer_email="wam-ros@users.noreply.invalid",
    description="World Action Models on dual-arm robots with ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "wam-ros = wam_ros.cli:main",
            # one executable per node; keep in sync with wam_ros.bringup.graph.NODE_EXECUTABLES
            "wam_observation_node = wam_ros.nodes.observation_node:main",
            "wam_policy_node = wam_ros.nodes.policy_node:main",
            "wam_decoder_node = wam_ros.nodes.decoder_node:main",
            "wam_smoother_node = wam_ros.nodes.smoother_node:main",
            "wam_bringup = wam_ros.nodes.bringup:main",
            "wam_sim_node = wam_ros.nodes.sim_node:main",
            # recording and replay (not part of the on-robot graph)
            "wam_recorder_node = wam_ros.nodes.recorder_node:main",
            "wam_teleop_node = wam_ros.nodes.teleop_node:main",
            "wam_bag_player = wam_ros.nodes.bag_player_node:main",
        ],
    },
)
