"""`wam-ros bench model` writes the documented JSON keys (tiny checkpoint, few chunks)."""

from __future__ import annotations

import json

from wam_ros.cli import main
from wam_ros.testing.checkpoints import make_tiny_checkpoint


def test_bench_model_json(tmp_path) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "bench.json"
    assert main(["bench", "model", "--checkpoint", str(ckpt), "--chunks", "3", "--warmup", "1",
                 "--memory-chunks", "12", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    for backend in ("torch", "onnxruntime"):
        assert doc["backends"][backend]["available"] is True
        for mode in ("joint", "fast", "two_stage"):
            entry = doc["backends"][backend][mode]
            assert 0 < entry["p50_ms"] <= entry["p99_ms"]
            assert doc["sai"][backend][mode]["blocking_p50_ms"] > 0
    # TensorRT: measured where it runs, else the reason why not (never silently absent)
    trt = doc["backends"]["tensorrt"]
    try:
        import tensorrt  # noqa: F401
        import torch

        expected = torch.cuda.is_available()
    except ImportError:
        expected = False
    assert trt["available"] is expected, trt
    if not expected:
        assert trt["reason"], trt
    window = 4 - 1  # tiny preset: memory_window 4 -> 3 cached chunks
    kv, ttt = doc["memory"]["kv"], doc["memory"]["ttt"]
    assert kv["state_bytes_last"] == window * kv["state_bytes_first"]
    assert ttt["state_bytes_last"] == ttt["state_bytes_first"] > 0
    for entry in (kv, ttt):
        assert entry["latency_ratio_last_first"] > 0 and entry["chunks"] == 12
