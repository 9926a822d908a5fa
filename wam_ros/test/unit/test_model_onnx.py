"""torch vs ONNX Runtime parity, memory state included.

Tolerance (float32 state tolerance after several chunks of recurrence): actions within 1e-5
absolute (action units, std ~0.05; observed ~3e-8), KV-cache keys/values and TTT fast weights
within 1e-4 absolute (observed ~2e-6 and ~3e-8)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from wam_ros.model.export import export_onnx
from wam_ros.runtime import load_policy
from wam_ros.testing.checkpoints import fake_observation, make_tiny_checkpoint

ATOL = 1e-4  # memory state
ATOL_ACTIONS = 1e-5
ROBOT = "cobot_magic"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory):
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
    export_onnx(path, log=lambda *_: None)
    return path


def test_export_writes_all_graphs(ckpt) -> None:
    names = sorted(p.stem for p in (ckpt / "onnx").glob("*.onnx"))
    assert names == ["absorb_latent", "context_kv", "context_ttt", "encode", "step_action_kv",
                     "step_action_ttt", "step_latent_kv", "step_latent_ttt"]


@pytest.mark.parametrize("memory", ["kv", "ttt"])
@pytest.mark.parametrize("mode", ["joint", "fast", "two_stage"])
def test_torch_onnxruntime_parity(ckpt, memory: str, mode: str) -> None:
    pt = load_policy(ckpt, backend="torch", memory=memory, mode=mode)
    ort = load_policy(ckpt, backend="onnxruntime", memory=memory, mode=mode)
    n = pt.cfg.memory_window + 1  # the KV window fills and evicts
    for i in range(n):
        obs = fake_observation(ROBOT, pt.meta.image_size, i)
        a, b = pt.infer(obs), ort.infer(obs)
        np.testing.assert_allclose(b.actions, a.actions, atol=ATOL_ACTIONS)
    h_pt, h_ort = pt.speculate(0.5), ort.speculate(0.5)
    np.testing.assert_allclose(h_ort.x_act, h_pt.x_act, atol=ATOL)
    obs = fake_observation(ROBOT, pt.meta.image_size, n)
    np.testing.assert_allclose(ort.complete(h_ort, obs).actions,
                               pt.complete(h_pt, obs).actions, atol=ATOL_ACTIONS)
    # the memory state that went in and out of the graphs agrees
    if memory == "kv":
        assert len(pt.kv) == len(ort.kv) == pt.cfg.memory_window - 1
        for (ka, va), (kb, vb) in zip(pt.kv.entries, ort.kv.entries):
            np.testing.assert_allclose(kb, ka, atol=ATOL)
            np.testing.assert_allclose(vb, va, atol=ATOL)
    else:
        for wa, wb in zip(pt.ttt.weights, ort.ttt.weights):
            np.testing.assert_allclose(wb, wa, atol=ATOL)


def test_onnx_backend_without_export_is_clear(tmp_path) -> None:
    path = make_tiny_checkpoint(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="wam-ros export"):
        load_policy(path, backend="onnxruntime")


def test_export_cli(tmp_path, capsys) -> None:
    import torch

    from wam_ros.cli import main

    path = make_tiny_checkpoint(tmp_path / "ckpt")
    assert main(["export", str(path), "--format", "onnx"]) == 0
    assert (path / "onnx" / "step_action_ttt.onnx").is_file()
    assert main(["export", str(tmp_path / "missing")]) == 1
    if not torch.cuda.is_available():
        # TensorRT engines need TensorRT and a GPU: one clear line, exit code 1
        assert main(["export", str(path), "--format", "tensorrt"]) == 1
        assert "tensorrt" in capsys.readouterr().err.lower()


def test_inference_threads_reach_the_backend(ckpt) -> None:
    """PolicySettings.inference_threads -> load_policy(threads=) -> ONNX Runtime's pool size."""
    policy = load_policy(ckpt, backend="onnxruntime", threads=1)
    for session in policy.backend.sessions.values():
        assert session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads must be >= 0"):
        load_policy(ckpt, backend="onnxruntime", threads=-1)
