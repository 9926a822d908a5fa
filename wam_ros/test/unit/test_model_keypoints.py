"""The keypoint encoder (`conv_keypoints`): spatial soft-argmax places a keypoint where its map
peaks, tokens stay in [-1, 1], the encoder trains with the policy, and its graphs export to
ONNX with the same actions as torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam_ros.core.config import ConfigError
from wam_ros.model.config import load_config
from wam_ros.model.encoders import KeypointEncoder
from wam_ros.runtime import load_policy
from wam_ros.testing.checkpoints import fake_observation, make_tiny_checkpoint, tiny_model


def _encoder(**kw) -> KeypointEncoder:
    cfg, _ = load_config("tiny")
    cfg.encoder, cfg.image_size, cfg.grid, cfg.keypoints = "conv_keypoints", (32, 48), 2, 8
    for k, v in kw.items():
        setattr(cfg, k, v)
    return KeypointEncoder(cfg)


def test_soft_argmax_finds_the_peak_of_each_map() -> None:
    enc = _encoder()
    fh, fw = 8, 12  # stride 4 of 32 x 48
    assert enc.coords.shape == (fh * fw, 2)
    peaks = [(0, 0), (7, 11), (3, 5), (4, 6), (0, 11), (7, 0), (2, 2), (5, 9)]
    maps = torch.full((1, 8, fh, fw), -50.0)
    for k, (r, c) in enumerate(peaks):
        maps[0, k, r, c] = 50.0
    points = enc.soft_argmax(maps)[0].detach().numpy()
    expected = [(-1 + 2 * c / (fw - 1), -1 + 2 * r / (fh - 1)) for r, c in peaks]
    np.testing.assert_allclose(points, expected, atol=1e-4)


def test_tokens_are_bounded_and_move_with_the_image() -> None:
    torch.manual_seed(0)
    enc = _encoder()
    img = torch.zeros(2, 3, 32, 48)
    img[0, :, 4:10, 4:10] = 255.0  # a bright square top left ...
    img[1, :, 20:26, 36:42] = 255.0  # ... and bottom right
    tokens = enc(img)
    assert tokens.shape == (2, 4, 4)  # 8 keypoints x (x, y) over 2x2 tokens
    assert tokens.abs().max() <= 1.0
    assert (tokens[0] - tokens[1]).abs().max() > 1e-3


def test_config_checks_keypoints_split_over_tokens(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("base: tiny\nmodel:\n  encoder: conv_keypoints\n  grid: 2\n  keypoints: 6\n")
    with pytest.raises(ConfigError, match="keypoints"):
        load_config(str(path))
    path.write_text("base: tiny\nmodel:\n  encoder: efficientnet_lite0\n"
                    "  encoder_trainable: true\n")
    with pytest.raises(ConfigError, match="encoder_trainable"):
        load_config(str(path))


def test_trainable_keypoints_get_gradients_and_skip_the_token_norm() -> None:
    model = tiny_model(encoder="conv_keypoints", keypoints=8, encoder_trainable=True)
    img = torch.rand(3, 3, *model.cfg.image_size) * 255
    tokens = model.raw_tokens(img)
    # coordinates as they are (a per-token layer norm would erase their common offset)
    torch.testing.assert_close(tokens, model.encoder(img))
    tokens.square().sum().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_onnx_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from wam_ros.model.export import export_onnx

    ckpt = make_tiny_checkpoint(tmp_path, encoder="conv_keypoints", keypoints=8)
    export_onnx(ckpt, log=lambda *_: None)
    pt = load_policy(ckpt, backend="torch")
    ort = load_policy(ckpt, backend="onnxruntime")
    for i in range(3):
        obs = fake_observation("cobot_magic", pt.meta.image_size, i)
        np.testing.assert_allclose(ort.infer(obs).actions, pt.infer(obs).actions, atol=1e-5)


def test_stats_of_keypoint_tokens_are_fixed_not_measured(tmp_path) -> None:
    """The untrained encoder's coordinate statistics would only distort what training sets:
    feature statistics are mean 0 / std 0.5; state and action statistics come from the data."""
    from wam_ros.core.robot import RobotSpec
    from wam_ros.data.dataset_reader import EpisodeReader
    from wam_ros.data.synthetic_dataset import make_synthetic_dataset
    from wam_ros.data.windows import WindowDataset
    from wam_ros.model.stats import compute_stats

    model = tiny_model(encoder="conv_keypoints", keypoints=8, encoder_trainable=True)
    root = make_synthetic_dataset(tmp_path / "data", RobotSpec.load("cobot_magic"),
                                  n_episodes=2, length=20, image_size=model.cfg.image_size)
    reader = EpisodeReader(root)
    data = WindowDataset(reader, [0, 1], model.cfg.horizon, 2)
    stats = compute_stats(model, data, 4, torch.device("cpu"))
    assert torch.equal(stats["feat_mean"], torch.zeros(model.feature_dim))
    assert torch.equal(stats["feat_std"], torch.full((model.feature_dim,), 0.5))
    assert stats["state_std"].shape == (model.cfg.action_dim,)
    assert float(stats["state_std"].max()) > 0.01  # measured from the episodes
