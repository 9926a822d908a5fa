"""The launch files run for real: a colcon build of the repository as a workspace (setup.py
data files, the ament index, lib/wam_ros/<executable>), then the upstream `launch`,
`launch_ros` and `launch_testing` (installed from ../shared/ros-launch by tools/setup.sh where
ROS comes from PyPI wheels) start every launch file with its default arguments and the shipped
checkpoints. Skipped, with the reason, where the launch stack is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parents[1]  # the test folder: helpers

pytestmark = pytest.mark.slow


def _launch_stack_missing() -> str:
    for module in ("launch", "launch_ros", "launch_testing", "composition_interfaces.srv",
                   "ament_index_python"):
        try:
            __import__(module)
        except ImportError as exc:
            return (f"the ROS 2 launch stack is not installed ({module}: {exc}); tools/setup.sh "
                    "installs it from ../shared/ros-launch where that folder exists")
    if shutil.which("colcon", path=str(Path(sys.executable).parent)) is None:
        return "colcon is not installed beside this Python"
    return ""


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> dict[str, str]:
    """A colcon workspace holding this repository, built; the environment of its install
    (what `source install/setup.sh` gives)."""
    missing = _launch_stack_missing()
    if missing:
        pytest.skip(missing)
    ws = tmp_path_factory.mktemp("colcon_ws")
    (ws / "src").mkdir()
    for package in ("wam_ros", "wam_ros_msgs"):
        (ws / "src" / package).symlink_to(REPO / package)
    venv = Path(sys.prefix)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
           "AMENT_PREFIX_PATH": os.environ.get("AMENT_PREFIX_PATH", str(venv))}
    build = subprocess.run(
        [str(venv / "bin" / "colcon"), "build", "--base-paths", "src", "--event-handlers",
         "console_direct-", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF", f"-DCMAKE_PREFIX_PATH={venv}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    dump = subprocess.run(["bash", "-c", f"source {ws}/install/setup.sh && env -0"],
                          env=env, capture_output=True, timeout=60, check=True)
    installed = dict(item.split("=", 1) for item in dump.stdout.decode().split("\0")
                     if "=" in item)
    assert (ws / "install" / "wam_ros" / "lib" / "wam_ros" / "wam_policy_node").is_file()
    return installed


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[int, str]:
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            code = None
    text = log.read_text()
    assert code is not None, f"timed out after {timeout} s:\n{text[-6000:]}"
    return code, text


@pytest.mark.parametrize("launch_file, robot", [("cobot_magic.launch.py", "cobot_magic"),
                                                ("agibot_g1.launch.py", "agibot_g1"),
                                                ("sim.launch.py", "cobot_magic")])
def test_launch_file_with_default_arguments(workspace, ros_domain, tmp_path, launch_file,
                                            robot):
    env = {**workspace, "ROS_DOMAIN_ID": str(ros_domain)}
    code, text = _run([sys.executable, "-m", "launch_testing.launch_test",
                       str(HERE / "launch" / "graph_launch_test.py"),
                       f"launch_file:={launch_file}", f"robot:={robot}"],
                      env, tmp_path / "launch_test.log", 600)
    assert code == 0, text[-8000:]
    assert "FAILED" not in text and "Traceback" not in text, text[-8000:]


@pytest.mark.parametrize("argument, says", [
    ("scheduler:=bogus", "launch argument scheduler:=bogus; allowed: sync, async, sai"),
    ("checkpoint:=/nonexistent", "launch argument checkpoint:=/nonexistent"),
    ("robot:=nope", "launch argument robot:=nope"),
    ("params_file:=/missing.yaml", "launch argument params_file:=/missing.yaml: no such file"),
    ("realtime_priority:=100", "realtime_priority: got '100'; allowed: 0 (normal scheduling)"),
])
def test_a_bad_argument_ends_the_launch_with_one_line(workspace, ros_domain, tmp_path,
                                                      argument, says):
    env = {**workspace, "ROS_DOMAIN_ID": str(ros_domain)}
    code, text = _run([sys.executable, str(HERE / "launch_driver.py"), "wam_ros",
                       "cobot_magic.launch.py", argument], env, tmp_path / "launch.log", 120)
    assert code != 0, text
    assert says in text, text
    assert "process started" not in text, text  # nothing was started


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is `pid`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return out


def _thread_priorities(pid: int) -> list[tuple[str, int, int]]:
    """(name, scheduling policy, real-time priority) of each thread of `pid`."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            tid = int(task.name)
            out.append(((task / "comm").read_text().strip(), os.sched_getscheduler(tid),
                        os.sched_getparam(tid).sched_priority))
        except (OSError, ValueError):
            continue
    return out


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_supervision_and_ctrl_c(workspace, ros_domain, tmp_path):
    """ros2 launch of the CobotMagic graph: the decoder (stateless) is respawned after it is
    killed; the policy (required) killed ends the launch with a non-zero code and one line
    naming it; a second launch, with the default arguments, runs every node's control path
    SCHED_FIFO at the default realtime_priority (or says why not; the policy's main thread is
    back at it after loading the model at normal priority) and, stopped with Ctrl-C (SIGINT),
    exits with 0."""
    from wam_ros.core.settings import RT_PRIORITY_DEFAULT

    env = {**workspace, "ROS_DOMAIN_ID": str(ros_domain)}
    cmd = [sys.executable, str(HERE / "launch_driver.py"), "wam_ros", "cobot_magic.launch.py"]

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    def node_pid(launch: subprocess.Popen, executable: str) -> int | None:
        return next((p for p, c in _children(launch.pid).items() if executable in c), None)

    log = tmp_path / "supervised.log"
    launch = start(log)
    try:
        assert _wait(lambda: "warm inference" in log.read_text(), 180), log.read_text()[-6000:]
        decoder = node_pid(launch, "wam_decoder_node")
        assert decoder is not None, _children(launch.pid)
        os.kill(decoder, signal.SIGKILL)
        assert _wait(lambda: node_pid(launch, "wam_decoder_node") not in (None, decoder), 30)
        assert launch.poll() is None, log.read_text()[-6000:]
        policy = node_pid(launch, "wam_policy_node")
        assert policy is not None
        os.kill(policy, signal.SIGKILL)
        code = launch.wait(60)
        text = log.read_text()
        assert code != 0 and "required node wam_policy exited with code -9" in text, text[-6000:]
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(10)

    log = tmp_path / "ctrl_c.log"
    launch = start(log)
    try:
        assert _wait(lambda: "warm inference" in log.read_text(), 180), log.read_text()[-6000:]
        nodes = {p: c for p, c in _children(launch.pid).items() if "wam_ros" in c}
        assert len(nodes) == 4, nodes

        def policies() -> dict[str, int]:  # (the executables are Python scripts)
            return {c.split()[1].rsplit("/", 1)[-1]: os.sched_getscheduler(p)
                    for p, c in nodes.items()}

        # each node sets it as it starts, before rclpy (the smoother may start after the
        # policy's warm-up has been logged), or says it was not allowed to
        refused = (f"WAM_ROS_RT_PRIORITY={RT_PRIORITY_DEFAULT} (launch argument "
                   "realtime_priority) not applied")
        assert _wait(lambda: refused in log.read_text() or set(policies().values()) == {
            os.SCHED_FIFO}, 30), policies()
        if refused in log.read_text():  # no rtprio allowed here
            assert set(policies().values()) == {os.SCHED_OTHER}, policies()
        else:
            priorities = {c.split()[1].rsplit("/", 1)[-1]: os.sched_getparam(p).sched_priority
                          for p, c in nodes.items()}
            threads = {c.split()[1].rsplit("/", 1)[-1]: sorted(_thread_priorities(p))
                       for p, c in nodes.items()}
            assert set(priorities.values()) == {RT_PRIORITY_DEFAULT}, (
                priorities, threads, "launch:", _thread_priorities(launch.pid),
                "test:", _thread_priorities(os.getpid()))
        # Ctrl-C in a terminal: SIGINT to the foreground process group, the launch and its
        # nodes alike (launch then only waits for them, escalating after 5 s)
        os.killpg(launch.pid, signal.SIGINT)
        code = launch.wait(60)
        text = log.read_text()
        assert code == 0, text[-6000:]
        assert not _children(launch.pid)
        assert "failed to terminate" not in text, text[-6000:]  # each node ended on SIGINT
        assert text.count("process has finished cleanly") == 4, text[-6000:]
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(10)
