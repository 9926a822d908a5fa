"""Record -> train -> replay without hardware, over real DDS: the kinematic fake robot, the
teleop node (scripted operator driving leader arms and follower) and the recorder node run as
processes; one episode is kept through the services, the next one's recorder is SIGKILLed
mid-episode. Both bags become a dataset, a tiny model trains on it, and the killed bag replays
offline and live (the node graph on sim time) with chunks and commands within limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from wam_ros.cli import main as cli_main  # noqa: E402
from wam_ros.data.bag_reader import open_bag  # noqa: E402
from wam_ros.data.dataset_reader import EpisodeReader  # noqa: E402
from wam_ros.nodes import topics  # noqa: E402
from wam_ros.testing.process import NodeProcess, python_module_cmd, spin_until  # noqa: E402

pytestmark = pytest.mark.slow

ROBOT = "cobot_magic"
FLUSH_S = 0.5


def _call(executor, node, srv_type, name: str, request) -> object:
    client = node.create_client(srv_type, name)
    assert spin_until(executor, client.service_is_ready, 60.0), f"{name} not available"
    future = client.call_async(request)
    assert spin_until(executor, future.done, 30.0), f"{name} did not answer"
    node.destroy_client(client)
    return future.result()


def _segments(bag: Path) -> int:
    meta = bag / "metadata.yaml"
    if not meta.is_file():
        return 0
    return len(yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]["files"])


def test_record_kill_build_train_replay(rclpy_context, tmp_path):
    episodes = tmp_path / "episodes"
    procs = {
        "fake": NodeProcess(python_module_cmd(
            "wam_ros.nodes.fake_robot", "--ros-args", "-p", f"robot:={ROBOT}",
            "-p", "camera_width:=64", "-p", "camera_height:=48"),
            log_path=str(tmp_path / "fake.log")),
        "teleop": NodeProcess(python_module_cmd(
            "wam_ros.nodes.teleop_node", "--ros-args", "-p", f"robot:={ROBOT}",
            "-p", "operator:=scripted", "-p", "seed:=4"), log_path=str(tmp_path / "teleop.log")),
        "recorder": NodeProcess(python_module_cmd(
            "wam_ros.nodes.recorder_node", "--ros-args", "-p", f"robot:={ROBOT}",
            "-p", f"output_dir:={episodes}", "-p", f"flush_interval_s:={FLUSH_S}",
            "-p", "min_free_mb:=1.0", "-p", "task:=wave both arms", "-p", "note:=e2e"),
            log_path=str(tmp_path / "recorder.log")),
    }
    node = rclpy.create_node("record_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    leader: list[JointState] = []
    node.create_subscription(JointState, "/master/joint_left", leader.append,
                             topics.SENSOR_QOS)

    def logs() -> str:
        return "\n".join(f"--- {k}\n{p.output()}" for k, p in procs.items())

    try:
        # the operator moves the leaders (it waits for the follower's first joint state)
        assert spin_until(executor, lambda: len(leader) > 10, 60.0), logs()
        # episode 1: start, record, stop and keep, mark success
        started = _call(executor, node, Trigger, topics.RECORD_START, Trigger.Request())
        assert started.success, started.message
        spin_until(executor, lambda: False, 2.5)
        stopped = _call(executor, node, Trigger, topics.RECORD_STOP, Trigger.Request())
        assert stopped.success and stopped.message == started.message
        assert _call(executor, node, SetBool, topics.RECORD_MARK,
                     SetBool.Request(data=True)).success
        kept = Path(started.message)
        # episode 2: killed mid-episode once a few segments are closed
        second = _call(executor, node, Trigger, topics.RECORD_START, Trigger.Request())
        assert second.success, second.message
        killed = Path(second.message)
        assert spin_until(executor, lambda: _segments(killed) >= 4, 30.0), logs()
        os.kill(procs["recorder"].proc.pid, signal.SIGKILL)
        procs["recorder"].proc.wait(10)
    finally:
        executor.shutdown()
        node.destroy_node()
        codes = {k: p.stop() for k, p in procs.items()}
    assert codes["fake"] in (0, -2) and codes["teleop"] in (0, -2), (codes, logs())
    assert codes["recorder"] == -signal.SIGKILL
    assert "Traceback" not in logs(), logs()

    first = open_bag(kept)
    assert first.custom["complete"] == "true" and first.custom["success"] == "true"
    assert first.custom["task"] == "wave both arms" and first.custom["note"] == "e2e"
    bag = open_bag(killed)  # opens although its recorder never closed it
    assert bag.custom["complete"] == "false"
    listed_s = _segments(killed) * FLUSH_S
    expected = {"/camera_f/color/image_raw", "/camera_l/color/image_raw",
                "/camera_r/color/image_raw", "/joint_states", "/master/joint_left",
                "/master/joint_right"}
    assert set(bag.topics) == expected
    # everything up to the last closed segment: ~30 frames/s per camera, ~50 Hz states
    assert bag.counts["/camera_f/color/image_raw"] >= 0.6 * 30 * listed_s, bag.counts
    assert bag.counts["/master/joint_left"] >= 0.6 * 50 * listed_s, bag.counts

    # bags -> dataset -> a tiny model
    data = tmp_path / "data"
    assert cli_main(["dataset", "build", str(episodes), "--out", str(data), "--image-size",
                     "32", "--quiet", "--json", str(tmp_path / "summary.json")]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["complete"] for r in rows] == [True, False] and all(r["frames"] > 40 for r in rows)
    assert len(EpisodeReader(data)) == 2
    from wam_ros.model.config import load_config
    from wam_ros.model.train import train

    model_cfg, train_cfg = load_config("tiny")
    train_cfg.steps, train_cfg.batch_size, train_cfg.train_chunks = 20, 4, 2
    train_cfg.val_every = train_cfg.save_every = 20
    train_cfg.val_batches, train_cfg.stats_samples = 1, 8
    result = train(data, (model_cfg, train_cfg), tmp_path / "ckpt", progress=False,
                   log=lambda _m: None)
    ckpt = result["checkpoint"]
    assert (ckpt / "model.safetensors").is_file()

    # offline replay of the killed episode with the trained model
    report_path = tmp_path / "offline.json"
    assert cli_main(["replay", str(killed), "--checkpoint", str(ckpt), "--json",
                     str(report_path), "--plot", str(tmp_path / "offline.png")]) == 0
    report = json.loads(report_path.read_text())
    assert report["episodes"][0]["chunks"] > 3 and 0 <= report["action_mse"] < 1.0
    assert report["latency_ms.p50"] > 0 and report["speed_x"] > 0

    # live replay: the bag on its topics with /clock, the node graph on sim time
    live = tmp_path / "live.json"
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "replay", str(killed), "--live",
         "--checkpoint", str(ckpt), "--json", str(live), "--workdir", str(tmp_path / "live")],
        capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = json.loads(live.read_text())
    assert out["chunks"] > 3 and out["commands"] > 20 and out["within_limits"], out
    assert out["published"] == bag.message_count and set(out["exit_codes"]) <= {0, -2}
    assert time.monotonic() - t0 < 200


def test_episode_control_from_a_terminal_or_foot_pedal(ros_domain, tmp_path):
    """The recorder in a (pseudo-)terminal: pagedown (a foot pedal) starts and stops, y marks
    success, q quits; the episode is kept."""
    import pty
    import select

    out = tmp_path / "episodes"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the recorder node on this test's domain
        os.execv(sys.executable, [sys.executable, "-m", "wam_ros.nodes.recorder_node",
                                  "--ros-args", "-p", f"output_dir:={out}",
                                  "-p", "min_free_mb:=1.0", "-p", "stop_grace_s:=0.1"])
    text = b""

    def read_until(done, timeout: float) -> bool:
        nonlocal text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    text += os.read(fd, 4096)
                except OSError:  # the child closed its terminal: it is exiting
                    time.sleep(0.05)
        return done()

    try:
        assert read_until(lambda: b"keys:" in text, 60.0), text.decode(errors="replace")
        os.write(fd, b"\x1b[6~")  # pagedown: start
        assert read_until(lambda: b"REC " in text, 10.0), text.decode(errors="replace")
        os.write(fd, b"\x1b[6~")  # pagedown: stop and keep
        assert read_until(lambda: b"kept " in text, 10.0), text.decode(errors="replace")
        os.write(fd, b"y")
        assert read_until(lambda: b"marked " in text, 10.0), text.decode(errors="replace")
        os.write(fd, b"q")
        exited: list[int] = []

        def ended() -> bool:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                exited.append(os.waitstatus_to_exitcode(status))
            return bool(exited)

        assert read_until(ended, 15.0) and exited == [0], text.decode(errors="replace")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    (bag,) = list(out.iterdir())
    custom = open_bag(bag).custom
    assert custom["complete"] == "true" and custom["success"] == "true"
