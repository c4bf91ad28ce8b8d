"""MobileFaceNet with upstream arcface_torch parameter names.

Input (N, 3, 112, 112) normalised as (x - 127.5) / 127.5; output embeddings (N, num_features).
State-dict keys and shapes equal those of insightface's `recognition/arcface_torch/backbones/mobilefacenet.py`
(`layers.*`, `conv_sep.*`, `features.layers.*`), so released `model.pt` files load with strict=True.

Layout (c = 64 * scale): stride-2 stem conv (3 -> c), a grouped 3x3 conv (or a residual stage), then
three stride-2 inverted-bottleneck transitions each followed by a residual stage: c -> c (56 -> 28),
c -> 2c (28 -> 14), 2c -> 2c (14 -> 7); a 1x1 conv to 512 channels; and the GDC head: a 7x7 depthwise
conv (global depthwise pooling) -> flatten (N, 512) -> linear (no bias) -> BatchNorm1d.
"""

from __future__ import annotations

import torch
from torch import nn

from ._input import check_face_batch, trunk_autocast


class ConvBlock(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> PReLU as `layers.0/1/2`; with activation=False (upstream's
    LinearBlock) only `layers.0/1`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(1, 1),
        stride=(1, 1),
        padding=(0, 0),
        groups: int = 1,
        activation: bool = True,
    ):
        super().__init__()
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation:
            layers.append(nn.PReLU(out_channels))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to `groups` channels, depthwise conv, 1x1 linear projection.

    (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride); with `residual` the input is added
    (requires in_channels == out_channels and stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        residual: bool = False,
        kernel=(3, 3),
        stride=(2, 2),
        padding=(1, 1),
        groups: int = 1,
    ):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_channels, groups),
            ConvBlock(groups, groups, kernel, stride=stride, padding=padding, groups=groups),
            ConvBlock(groups, out_channels, activation=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """`num_block` shape-preserving residual DepthWise blocks on `channels` channels."""

    def __init__(self, channels: int, num_block: int, groups: int, kernel=(3, 3), stride=(1, 1), padding=(1, 1)):
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, True, kernel, stride, padding, groups) for _ in range(num_block)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution head: (N, 512, 7, 7) -> (N, embedding_size)."""

    def __init__(self, embedding_size: int):
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(512, 512, kernel=(7, 7), stride=(1, 1), padding=(0, 0), groups=512, activation=False),
            nn.Flatten(1),  # torch.flatten(x, 1): the batch axis stays symbolic when traced
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet: (N, 3, 112, 112) -> (N, num_features).

    fp16: run the body (`layers`) under float16 autocast when the input is on CUDA (ignored otherwise);
        `conv_sep` and `features` run in the input's float dtype.
    blocks: depth of the four residual stages; blocks[0] == 1 uses a single grouped 3x3 conv instead.
    scale: width multiplier (64 * scale channels in the first stages).
    """

    def __init__(self, fp16: bool = False, num_features: int = 512, blocks=(1, 4, 6, 2), scale: int = 2):
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) != 4 or not all(isinstance(n, int) and n > 0 for n in blocks):
            raise ValueError(f"MobileFaceNet blocks must be 4 positive ints, got {blocks}; use e.g. (1, 4, 6, 2)")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale <= 0:
            raise ValueError(f"MobileFaceNet scale must be a positive int, got {scale!r}; use e.g. 2")
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(
                f"num_features must be a positive int (the embedding size), got {num_features!r}; use e.g. 512"
            )
        self.fp16 = bool(fp16)
        self.amp_dtype: torch.dtype | None = None  # half type of the trunk; None: float16 on CUDA only
        c = 64 * scale
        if blocks[0] == 1:
            first_stage = ConvBlock(c, c, kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=64)
        else:
            first_stage = Residual(c, num_block=blocks[0], groups=128)
        self.layers = nn.Sequential(
            ConvBlock(3, c, kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
            first_stage,
            DepthWise(c, c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=128),
            Residual(c, num_block=blocks[1], groups=128),
            DepthWise(c, 2 * c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=256),
            Residual(2 * c, num_block=blocks[2], groups=256),
            DepthWise(2 * c, 2 * c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=512),
            Residual(2 * c, num_block=blocks[3], groups=256),
        )
        self.conv_sep = ConvBlock(2 * c, 512)
        self.features = GDC(num_features)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 112, 112) float -> (N, num_features) in the input's dtype (float32 under fp16 autocast)."""
        check_face_batch(x, type(self).__name__)
        amp, use_amp = trunk_autocast(self.fp16, self.amp_dtype, x)
        with amp:
            x = self.layers(x)
        if use_amp:
            x = x.float()
        return self.features(self.conv_sep(x))


def get_mbf(fp16: bool, num_features: int, blocks=(1, 4, 6, 2), scale: int = 2) -> MobileFaceNet:
    """The standard MobileFaceNet ("mbf"), about 2.06M parameters at 512-d."""
    return MobileFaceNet(fp16, num_features, blocks, scale=scale)


def get_mbf_large(fp16: bool, num_features: int, blocks=(2, 8, 12, 4), scale: int = 4) -> MobileFaceNet:
    """The wider and deeper MobileFaceNet ("mbf_large")."""
    return MobileFaceNet(fp16, num_features, blocks, scale=scale)
