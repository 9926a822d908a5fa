"""Interop with the real openpi packages from PyPI, in their own environment
(tools/openpi_venv.sh: they pin numpy < 2), over the loopback:

- openpi-client's WebsocketClientPolicy drives `wam-ros serve` (the real command, a process)
  and gets the local policy's actions: same observations, same seed, a reset in the middle;
  tolerance 1e-5 (float32 state on the wire; the model runs in another process);
- our backend `remote` (mapping openpi_aloha) talks to a server built with openpi-server's
  WebsocketPolicyServer around a small ALOHA-convention policy, including its error path
  (traceback text, connection closed by the server, reconnection).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wam_ros.core.decoding import ChunkDecoder
from wam_ros.core.robot import RobotSpec
from wam_ros.core.types import Observation

ROOT = Path(__file__).resolve().parents[3]
INTEROP = Path(__file__).resolve().parents[1] / "interop"
TOLERANCE = 1e-5  # max |served - local| per action value (rad / normalised gripper)
SERVE_LINE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def openpi_python() -> str:
    """The side environment's python (created on first use, idempotent)."""
    out = subprocess.run(["bash", str(ROOT / "tools" / "openpi_venv.sh")], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, f"tools/openpi_venv.sh failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1]


def start_serve(args: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """`wam-ros serve ... --port 0`; returns the process and the port it printed."""
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "wam_ros.cli", "serve", *args,
                                 "--port", "0"], stdout=subprocess.PIPE, stderr=sink, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # blocks until the line or the end of the process
        match = SERVE_LINE.search(line)
        if match:
            return proc, int(match.group(1))
    proc.wait(30)
    raise AssertionError(f"wam-ros serve exited ({proc.returncode}):\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def test_openpi_client_drives_wam_ros_serve(openpi_python, tiny_checkpoint, tmp_path):
    from wam_ros.runtime import load_policy

    spec = RobotSpec.load("cobot_magic")
    ckpt = tiny_checkpoint("cobot_magic")
    local = load_policy(ckpt)
    h, w = local.meta.image_size
    n, reset_at = 6, 3
    rng = np.random.default_rng(7)
    images = {c: rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8) for c in spec.camera_names}
    joints = spec.home_vector()[None] + rng.normal(0, 0.02, (n, spec.action_dim)) * \
        ~spec.gripper_mask()
    state = spec.joint_to_action(joints).astype(np.float32)
    stamps = 50.0 + 0.3 * np.arange(n)
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, state=state, stamp=stamps, prompt=np.array(["pick the cube"] * n),
             **{f"images_{c}": v for c, v in images.items()})
    proc, port = start_serve([str(ckpt)], tmp_path / "serve.log")
    try:
        run = subprocess.run([openpi_python, str(INTEROP / "openpi_client_drive.py"), str(port),
                              str(src), str(dst), str(reset_at)], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        stop(proc)
    got = np.load(dst, allow_pickle=False)
    meta = json.loads(str(got["metadata"]))
    assert meta["cameras"] == list(spec.camera_names) and meta["image_size"] == [h, w]
    assert meta["action_layout"] == list(spec.action_layout)
    assert meta["dt"] == pytest.approx(local.meta.dt) and meta["horizon"] == local.meta.horizon
    worst = 0.0
    for i in range(n):
        if i == reset_at:
            local.reset()
        # the server saw the float32 state the client sent
        obs = Observation(float(stamps[i]), {c: images[c][i] for c in spec.camera_names},
                          spec.action_to_joint(state[i].astype(np.float64)),
                          task="pick the cube")
        # decoded as the decoder node decodes it (in a delta chunk, grippers are absolute)
        want = spec.joint_to_action(ChunkDecoder(spec).decode(local.infer(obs)).actions)
        assert got["actions"][i].shape == want.shape
        worst = max(worst, float(np.abs(got["actions"][i] - want).max()))
    print(f"openpi-client vs local policy: max |difference| {worst:.2e} (tolerance "
          f"{TOLERANCE:g})")
    assert worst <= TOLERANCE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_backend_talks_to_an_openpi_server(openpi_python, tmp_path):
    from wam_ros.runtime.remote import RemotePolicy, ServerFailed, ServerUnreachable
    from wam_ros.runtime.server_mapping import ServerMapping

    spec = RobotSpec.load("cobot_magic")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([openpi_python, str(INTEROP / "openpi_server_small.py"),
                               str(port)], stdout=log, stderr=log,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    remote = RemotePolicy(ServerMapping.load("openpi_aloha"), spec, f"ws://127.0.0.1:{port}",
                          timeout_s=60.0, backoff_s=(0.1, 0.5), log=lines.append)
    rng = np.random.default_rng(3)

    def obs(k: int, task: str = "fold the towel") -> Observation:
        # the cameras' native 480x640: the mapping pads them into 224x224, channels first
        return Observation(10.0 + k, {c: rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
                                      for c in spec.camera_names},
                           spec.home_vector() + 0.01 * k * ~spec.gripper_mask(), task=task)

    def call(o: Observation, wait_s: float = 120.0):
        """infer, retrying while the server is (re)starting to listen or reconnecting."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return remote.infer(o)
            except ServerUnreachable:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the openpi server is not reachable"
                time.sleep(0.2)

    try:
        first = obs(0)
        chunk = call(first)
        state = spec.joint_to_action(first.joint_positions)
        want = state[None] + 0.001 * np.arange(25)[:, None]  # the first 25 of 50 executed
        assert chunk.dt == 0.02 and chunk.names == spec.action_layout
        assert np.allclose(chunk.actions, want, atol=1e-6)
        # an error: its traceback text, logged once per kind; openpi's server then closes
        for _ in range(2):
            with pytest.raises(ServerFailed, match="RuntimeError: small policy: asked to fail"):
                call(obs(1, task="fail"))
        assert sum(remote.errors.values()) == 2
        assert sum("failed: RuntimeError: small policy" in ln for ln in lines) == 1
        for k in range(2, 4):  # and it serves again, on a new connection
            chunk = call(obs(k))
            assert np.allclose(chunk.actions[0], spec.joint_to_action(
                spec.home_vector() + 0.01 * k * ~spec.gripper_mask()), atol=1e-6)
        assert remote.stats()["remote.connects"] >= 2
    finally:
        remote.close()
        server.terminate()
        server.wait(30)
        log.close()


def test_bench_remote_reports_both_clients_and_each_latency(openpi_python, tmp_path):
    out = tmp_path / "remote.json"
    run = subprocess.run([sys.executable, "-m", "wam_ros.cli", "bench", "remote", "--requests",
                          "6", "--warmup", "1", "--duration", "2", "--latencies-ms", "50,150",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["commit"] and doc["machine"]["cpus"] >= 1 and doc["date"]
    rt = doc["round_trip"]
    assert rt["ours_overhead"]["n"] == rt["openpi_client_overhead"]["n"] == 6
    assert rt["image_size"] == [224, 224] and rt["cameras"] == 3
    assert set(doc["async"]) == {"50", "150"}
    for entry in doc["async"].values():
        assert entry["chunks"] >= 1 and entry["spliced"] >= 1
        assert 0.0 <= entry["idle_fraction"] <= 1.0
        assert np.isfinite(entry["max_boundary_jump_rad"])
