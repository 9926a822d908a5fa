"""core/, model/, runtime/, data/ and sim/ import with rclpy and every *_msgs module blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "wam_ros"

CHECK = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("rclpy", "launch", "launch_ros") or top.endswith("_msgs") \\
                    or top.endswith("_srvs"):
                raise ImportError(f"layering: {name} imported from a ROS-free layer")
            return None

    sys.meta_path.insert(0, Block())
    import wam_ros
    layer = sys.argv[1]
    pkg = importlib.import_module(f"wam_ros.{layer}")
    names = [pkg.__name__] + [m.name for m in pkgutil.walk_packages(pkg.__path__,
                                                                    pkg.__name__ + ".")]
    for name in names:
        importlib.import_module(name)
    print(len(names))
    """
)


ROS_FREE = ("core", "model", "runtime", "data", "sim")


@pytest.mark.parametrize("layer", ROS_FREE)
def test_layer_is_ros_free(layer):
    result = subprocess.run([sys.executable, "-c", CHECK, layer], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 1


def test_the_blocker_really_blocks():
    """The same check fails on nodes/, which does import rclpy."""
    result = subprocess.run([sys.executable, "-c", CHECK, "nodes"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "layering: " in result.stderr, result.stderr[-2000:]


def test_no_static_ros_imports_in_ros_free_layers():
    """Also catch imports hidden in functions, which an import-time check would miss."""
    offenders = []
    for layer in ROS_FREE:
        for path in (PACKAGE_DIR / layer).rglob("*.py"):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                words = line.strip().split()
                if len(words) >= 2 and words[0] in ("import", "from"):
                    top = words[1].split(".")[0]
                    if top == "rclpy" or top.endswith("_msgs") or top.endswith("_srvs"):
                        offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{lineno}: {line}")
    assert not offenders, "\n".join(offenders)
