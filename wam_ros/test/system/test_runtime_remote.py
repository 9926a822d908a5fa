"""Backend `remote` (runtime/remote.py), the server mappings (config/servers/*.yaml) and
`wam-ros serve`'s server (runtime/serve.py), over real websockets on the loopback: the wire
format, every shipped mapping, the served WAM against the local one, and the faults (server
unreachable, error text, slow call, bad chunk). No ROS."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest

from wam_ros.core.config import ConfigError
from wam_ros.core.decoding import ChunkDecoder
from wam_ros.core.robot import RobotSpec
from wam_ros.core.settings import PolicySettings
from wam_ros.core.types import Chunk, Observation
from wam_ros.runtime.chunk_runner import ChunkRunner
from wam_ros.runtime.msgpack_numpy import WireFormatError, packb, unpackb
from wam_ros.runtime.remote import (
    CallTimeout,
    ChunkRefused,
    RemotePolicy,
    ServerFailed,
    ServerUnreachable,
)
from wam_ros.runtime.scheduler import SchedulerConfig, make_scheduler
from wam_ros.runtime.serve import PolicyServer, checkpoint_server
from wam_ros.runtime.server_mapping import ServerMapping, available_mappings

COBOT = RobotSpec.load("cobot_magic")
G1 = RobotSpec.load("agibot_g1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def observation(spec: RobotSpec, k: int, size: tuple[int, int] = (48, 64),
                task: str = "pick") -> Observation:
    rng = np.random.default_rng(k)
    return Observation(100.0 + 0.5 * k,
                       {c: rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                        for c in spec.camera_names},
                       spec.home_vector() + 0.01 * k, task=task)


# ---- wire format ---------------------------------------------------------------------------
def test_msgpack_numpy_round_trip_and_refusals():
    doc = {"images": {"a": np.arange(24, dtype=np.uint8).reshape(2, 4, 3)},
           "state": np.linspace(0, 1, 14, dtype=np.float32), "n": np.int64(3),
           "f": np.float32(0.5), "prompt": "pick", "flag": np.array([True, False])}
    back = unpackb(packb(doc))
    assert back["prompt"] == "pick" and back["n"] == 3 and back["n"].dtype == np.int64
    for key in ("state", "flag"):
        assert back[key].dtype == doc[key].dtype and np.array_equal(back[key], doc[key])
    assert np.array_equal(back["images"]["a"], doc["images"]["a"])
    with pytest.raises(WireFormatError, match="not sent over the wire"):
        packb({"x": np.array([object()], dtype=object)})
    # crafted payloads: an object dtype, a byte count that does not fit the shape
    for dtype, data, shape, match in (("|O", b"\0" * 8, [1], "not sent"),
                                      ("<f4", b"\0" * 7, [2], "needs 8 bytes")):
        raw = msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype,
                             b"shape": shape}, use_bin_type=True)
        with pytest.raises(WireFormatError, match=match):
            unpackb(raw)
    with pytest.raises(WireFormatError):
        unpackb(b"\xc1")  # never used in msgpack


# ---- mappings ------------------------------------------------------------------------------
def test_shipped_mappings_load_and_resolve_for_their_robots():
    assert {"wam_ros", "openpi_aloha", "dreamzero_agibot_g1"} <= set(available_mappings())
    aloha = ServerMapping.load("openpi_aloha").resolve(COBOT, {})
    assert [c.camera for c in aloha.cameras] == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    assert len(aloha.action_joints) == 14 and aloha.execute == 25 and aloha.dt == 0.02
    dz = ServerMapping.load("dreamzero_agibot_g1")
    assert "Not public" in dz.not_public
    assert dz.resolve(G1, {}).action_space == "delta"
    for spec in (COBOT, G1):  # ours: everything from the server's metadata
        meta = {"robot": spec.name, "cameras": list(spec.camera_names), "image_size": [32, 40],
                "action_layout": list(spec.action_layout), "dt": 0.05, "horizon": 8,
                "action_space": "absolute"}
        r = ServerMapping.load("wam_ros").resolve(spec, meta)
        assert (r.cameras[0].height, r.cameras[0].width) == (32, 40)
        assert r.action_joints == tuple(spec.action_layout) and r.horizon == 8
    with pytest.raises(ConfigError, match="written for robot 'cobot_magic'"):
        ServerMapping.load("openpi_aloha").resolve(G1, {})


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(colour=1), "unknown key 'colour'"),
    (lambda d: d["cameras"][0].update(resize="squash"), r"cameras\[0\].resize: got 'squash'"),
    (lambda d: d["cameras"][0].update(camera="cam_low"), r"cameras\[0\].camera: 'cam_low'"),
    (lambda d: d["state"][0]["joints"].__setitem__(0, "elbow"), r"state\[0\].joints: 'elbow'"),
    (lambda d: d["action"].update(space="velocity"), "action.space: got 'velocity'"),
    (lambda d: d["action"].pop("joints"), "action.joints"),
    (lambda d: d.pop("state"), "key 'state' is missing"),
])
def test_mapping_errors_name_the_key(edit, match):
    import yaml

    from wam_ros.runtime.server_mapping import servers_dir

    doc = yaml.safe_load((servers_dir() / "openpi_aloha.yaml").read_text())
    edit(doc)
    with pytest.raises(ConfigError, match=match):
        ServerMapping.parse(doc, "openpi_aloha").resolve(COBOT, {})


def test_aloha_request_and_response():
    r = ServerMapping.load("openpi_aloha").resolve(COBOT, {})
    obs = observation(COBOT, 1, size=(480, 640))
    state = COBOT.joint_to_action(obs.joint_positions)
    req = r.request(obs, state)
    assert set(req) == {"images", "state", "prompt"} and req["prompt"] == "pick"
    img = req["images"]["cam_high"]
    assert img.shape == (3, 224, 224) and img.dtype == np.uint8
    # resized with padding: 480x640 -> 168x224 centred, black bars above and below
    assert img[:, :28].max() == 0 and img[:, -28:].max() == 0 and img[:, 28:196].max() > 0
    assert np.allclose(req["state"], state, atol=1e-6)
    chunk = np.tile(state, (50, 1)) + np.linspace(0, 0.1, 50)[:, None]
    out = r.actions({"actions": chunk.astype(np.float32)}, state)
    assert out.shape == (25, 14) and np.allclose(out, chunk[:25], atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(50, 7\).*expected \(H, 14\)"):
        r.actions({"actions": chunk[:, :7]}, state)
    bad = chunk.copy()
    bad[3, 6] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf values \(first at row 3, column 6 "
                                         "left_joint7"):
        r.actions({"actions": bad}, state)
    with pytest.raises(ValueError, match="no field 'actions'"):
        r.actions({"action": chunk}, state)


def test_dreamzero_request_reset_and_relative_flat_response():
    r = ServerMapping.load("dreamzero_agibot_g1").resolve(G1, {})
    obs = observation(G1, 2, size=(480, 640))
    state = G1.joint_to_action(obs.joint_positions)
    req = r.request(obs, state, session="s1")
    assert req["endpoint"] == "infer" and req["session_id"] == "s1"
    assert req["observation/top_head"].shape == (480, 640, 3)
    assert np.allclose(req["observation/left_arm_joint_position"], state[:7], atol=1e-6)
    assert np.allclose(req["observation/head_position"], [0.0, 0.0])
    # effectors: AgiBot's 0 = open .. 1 = closed, ours the other way round
    assert np.isclose(req["observation/left_effector_position"][0], 1.0 - state[14], atol=1e-6)
    assert r.reset_request("s2") == {"session_id": "s2", "endpoint": "reset"}
    delta = np.zeros((10, 16), np.float32)
    delta[:, 0] = 0.1
    delta[:, 14] = 0.5  # closing the left gripper by half its travel
    out = r.actions(delta, state)  # the response is the array itself
    assert np.allclose(out[:, 0], state[0] + 0.1, atol=1e-6)
    assert np.allclose(out[:, 14], state[14] - 0.5, atol=1e-6)
    assert np.allclose(out[:, 1:14], state[1:14], atol=1e-6)


# ---- a small served policy, for the faults ---------------------------------------------------
@dataclass
class _Echo:
    """Served policy: the chunk holds the state it was sent plus 0.01 per step; the prompt
    asks for a fault."""

    horizon: int = 6

    def infer(self, obs: Observation) -> Chunk:
        if obs.task.startswith("fail"):
            raise RuntimeError(f"asked to {obs.task}")
        if obs.task == "slow":
            threading.Event().wait(1.0)
        state = COBOT.joint_to_action(obs.joint_positions)
        actions = state[None] + 0.01 * np.arange(self.horizon)[:, None]
        if obs.task == "nan":
            actions[2, 3] = np.nan
        if obs.task == "narrow":
            actions = actions[:, :13]
        return Chunk(obs.stamp, actions.astype(np.float32), 0.05)

    def reset(self) -> None:
        pass


def echo_server(port: int = 0) -> PolicyServer:
    meta = {"robot": COBOT.name, "cameras": list(COBOT.camera_names), "image_size": [48, 64],
            "action_layout": list(COBOT.action_layout), "dt": 0.05, "horizon": 6,
            "action_space": "absolute"}
    return PolicyServer(_Echo, meta, COBOT, port=port, log=lambda _m: None)


def test_served_checkpoint_gives_the_local_policy_actions(tiny_checkpoint):
    from wam_ros.runtime import load_policy

    ckpt = tiny_checkpoint("cobot_magic")
    local = load_policy(ckpt)
    h, w = local.meta.image_size
    server = checkpoint_server(str(ckpt), port=0, log=lambda _m: None)
    with server.in_thread() as port:
        remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, f"ws://127.0.0.1:{port}",
                              timeout_s=60.0)
        for k in range(6):
            if k == 3:  # a new episode on both sides: memory cleared, same noise sequence
                local.reset()
                remote.reset()
            obs = observation(COBOT, k, size=(h, w))
            got, want = remote.infer(obs), local.infer(obs)
            assert got.stamp == obs.stamp and got.horizon == local.meta.horizon
            # decoded as the decoder node decodes it (in a delta chunk, grippers are absolute)
            absolute = COBOT.joint_to_action(ChunkDecoder(COBOT).decode(want).actions)
            assert np.abs(got.actions - absolute).max() <= 1e-5
        assert remote.stats()["remote.connects"] == 1
        remote.close()


def test_unreachable_server_holds_logs_once_and_reconnects_with_backoff():
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    now = [0.0]
    lines: list[str] = []
    remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, url, timeout_s=30.0,
                          backoff_s=(0.5, 4.0), clock=lambda: now[0], log=lines.append)
    runner = ChunkRunner(remote, make_scheduler("async", SchedulerConfig()))
    runner.on_observation(observation(COBOT, 0), 100.0)
    job = runner.poll(100.0)
    result = runner.execute(job)
    assert "ServerUnreachable" in result.error and url in result.error
    assert runner.finish(result, 100.1) is None  # no chunk: the arm holds
    assert runner.refusals["inference_failed"] == 1
    assert len(lines) == 1 and url in lines[0] and "unreachable" in lines[0]
    # inside the backoff: refused at once, no new attempt, no new log line
    with pytest.raises(ServerUnreachable, match="next try in"):
        remote.infer(observation(COBOT, 1))
    assert remote.stats()["remote.unreachable"] == 1 and len(lines) == 1
    now[0] = 0.6  # past the first wait: a second attempt, the wait doubles
    with pytest.raises(ServerUnreachable):
        remote.infer(observation(COBOT, 2))
    assert remote.stats()["remote.unreachable"] == 2 and len(lines) == 1
    with echo_server(port).in_thread():
        now[0] = 2.0
        chunk = remote.infer(observation(COBOT, 3))
    assert chunk.actions.shape == (6, 14)
    assert len(lines) == 2 and "connected" in lines[1]


def test_server_error_text_is_logged_once_per_kind_and_counted():
    lines: list[str] = []
    with echo_server().in_thread() as port:
        remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, f"ws://127.0.0.1:{port}",
                              timeout_s=30.0, log=lines.append)
        for task in ("fail once", "fail once", "fail twice"):
            with pytest.raises(ServerFailed, match=f"RuntimeError: asked to {task}"):
                remote.infer(observation(COBOT, 0, task=task))
        assert remote.errors == {"RuntimeError: asked to fail once": 2,
                                 "RuntimeError: asked to fail twice": 1}
        assert len(lines) == 2 and all("logged once per kind" in ln for ln in lines)
        assert remote.stats()["remote.server_errors"] == 3
        assert remote.infer(observation(COBOT, 1)).actions.shape == (6, 14)


def test_slow_call_holds_and_its_late_answer_is_dropped():
    with echo_server().in_thread() as port:
        remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, f"ws://127.0.0.1:{port}",
                              timeout_s=0.2, log=lambda _m: None)
        with pytest.raises(CallTimeout, match="no answer within 0.2 s"):
            remote.infer(observation(COBOT, 0, task="slow"))
        remote.timeout_s = 60.0
        obs = observation(COBOT, 1)
        chunk = remote.infer(obs)  # the slow call's answer arrives first and is dropped
        state = COBOT.joint_to_action(obs.joint_positions)
        assert np.allclose(chunk.actions[0], state, atol=1e-6)
        stats = remote.stats()
        assert stats["remote.timeouts"] == 1 and stats["remote.late_dropped"] == 1


def test_chunks_with_nan_or_the_wrong_shape_are_refused():
    with echo_server().in_thread() as port:
        remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, f"ws://127.0.0.1:{port}",
                              timeout_s=30.0, log=lambda _m: None)
        with pytest.raises(ChunkRefused, match=r"actions \(6, 14\) has 1 NaN/inf values"):
            remote.infer(observation(COBOT, 0, task="nan"))
        with pytest.raises(ChunkRefused, match=r"shape \(6, 13\) float32; expected \(H, 14\)"):
            remote.infer(observation(COBOT, 1, task="narrow"))
        assert remote.stats()["remote.chunks_refused"] == 2


def test_sai_is_refused_for_a_remote_policy():
    with pytest.raises(ConfigError, match="sai needs the model's internals"):
        PolicySettings(backend="remote", scheduler="sai", server_url="ws://127.0.0.1:1")
    remote = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, "ws://127.0.0.1:1",
                          log=lambda _m: None)
    with pytest.raises(NotImplementedError, match="runs only on our WAM"):
        remote.speculate(0.5)
    with pytest.raises(ValueError, match="expected ws://HOST:PORT"):
        RemotePolicy(ServerMapping.load("wam_ros"), COBOT, "http://127.0.0.1:1")


def test_api_key_is_required_when_set_and_healthz_answers():
    import urllib.request

    server = echo_server()
    server.api_key = "s3cret"
    with server.in_thread() as port:
        url = f"ws://127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as answer:
            assert answer.status == 200
        lines: list[str] = []
        without = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, url, log=lines.append)
        with pytest.raises(ServerUnreachable):
            without.infer(observation(COBOT, 0))
        assert len(lines) == 1 and url in lines[0] and "401" in lines[0]
        with_key = RemotePolicy(ServerMapping.load("wam_ros"), COBOT, url, api_key="s3cret",
                                timeout_s=30.0, log=lambda _m: None)
        assert with_key.infer(observation(COBOT, 1)).actions.shape == (6, 14)
        with_key.close()


def test_serve_command_refuses_what_it_cannot_serve(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    ckpt = tiny_checkpoint("cobot_magic")
    for args, match in (([str(tmp_path / "missing")], "has no config.yaml"),
                        ([str(ckpt), "--backend", "onnxruntime"], "wam-ros export")):
        run = subprocess.run([sys.executable, "-m", "wam_ros.cli", "serve", *args, "--port", "0"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and match in run.stdout, run.stdout + run.stderr
