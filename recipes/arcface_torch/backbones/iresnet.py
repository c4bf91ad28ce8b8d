"""IResNet, the pre-activation ResNet used by ArcFace, with upstream arcface_torch parameter names.

Input (N, 3, 112, 112) normalised as (x - 127.5) / 127.5; output embeddings (N, num_features).
State-dict keys and shapes equal those of insightface's `recognition/arcface_torch/backbones/iresnet.py`,
so insightface's released `model.pt` files load here with strict=True, and ours load there.

Layout: 3x3 stem conv (64 ch, stride 1) + BN + PReLU; four stages of IBasicBlock with 64/128/256/512
channels, each stage halving the resolution (112 -> 56 -> 28 -> 14 -> 7); BN; flatten (N, 512*7*7);
dropout; fc -> (N, num_features); BatchNorm1d `features` whose scale is frozen at 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ._input import check_face_batch, trunk_autocast

# Blocks per stage, as upstream arcface_torch defines them.
IRESNET_LAYERS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
STAGE_WIDTHS = (64, 128, 256, 512)
FEATURE_MAP_SIZE = 7  # 112 / 2**4
BN_EPS = 1e-5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Residual block BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (projected) input.

    (N, in_channels, H, W) -> (N, channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet trunk + embedding head: (N, 3, 112, 112) -> (N, num_features).

    layers: blocks per stage (4 positive ints), e.g. (3, 4, 14, 3) for r50.
    dropout: drop probability applied to the flattened feature map before `fc`.
    fp16: run the convolutional trunk under float16 autocast when the input is on CUDA (ignored otherwise);
        `fc` and `features` always run in the input's float dtype.
    zero_init_residual: start every block's last BN scale at 0, so each block begins as the identity.
    """

    fc_scale = FEATURE_MAP_SIZE * FEATURE_MAP_SIZE

    def __init__(
        self,
        layers,
        dropout: float = 0.0,
        num_features: int = 512,
        fp16: bool = False,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        layers = tuple(layers)
        if len(layers) != 4 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise ValueError(
                f"IResNet layers must be 4 positive ints (blocks per stage), got {layers}; "
                f"use e.g. (3, 4, 14, 3) for r50"
            )
        _check_head_args(dropout, num_features)
        self.fp16 = bool(fp16)
        self.amp_dtype: torch.dtype | None = None  # half type of the trunk; None: float16 on CUDA only
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0], eps=BN_EPS)
        self.prelu = nn.PReLU(STAGE_WIDTHS[0])
        in_channels = STAGE_WIDTHS[0]
        for index, (channels, blocks) in enumerate(zip(STAGE_WIDTHS, layers, strict=False), start=1):
            setattr(self, f"layer{index}", _make_stage(in_channels, channels, blocks))
            in_channels = channels
        self.bn2 = nn.BatchNorm2d(STAGE_WIDTHS[-1], eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(STAGE_WIDTHS[-1] * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, IBasicBlock):
                    nn.init.zeros_(module.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 112, 112) float -> (N, num_features) in the input's dtype (float32 under fp16 autocast)."""
        check_face_batch(x, type(self).__name__)
        amp, use_amp = trunk_autocast(self.fp16, self.amp_dtype, x)
        with amp:
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.bn2(x)
            x = torch.flatten(x, 1)  # keeps the batch axis symbolic when traced
            x = self.dropout(x)
        if use_amp:
            x = x.float()
        return self.features(self.fc(x))


def _make_stage(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
    """A stride-2 stage: the first block projects the input with a 1x1 conv + BN, the rest keep the shape."""
    downsample = nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=1, stride=2, bias=False),
        nn.BatchNorm2d(channels, eps=BN_EPS),
    )
    stage = [IBasicBlock(in_channels, channels, stride=2, downsample=downsample)]
    stage += [IBasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*stage)


def _check_head_args(dropout: float, num_features: int) -> None:
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features <= 0:
        raise ValueError(
            f"num_features must be a positive int (the embedding size), got {num_features!r}; use e.g. 512"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}; use 0.0 to disable it")


def iresnet(name: str, dropout: float = 0.0, fp16: bool = False, num_features: int = 512, **kwargs) -> IResNet:
    """Build the IResNet named `name` (one of IRESNET_LAYERS: r18, r34, r50, r100, r200)."""
    if name not in IRESNET_LAYERS:
        raise ValueError(f"unknown IResNet depth {name!r}; choose one of {', '.join(IRESNET_LAYERS)}")
    unknown = sorted(set(kwargs) - {"zero_init_residual"})
    if unknown:
        raise ValueError(
            f"IResNet got unknown option(s) {', '.join(unknown)}; the only extra option is zero_init_residual"
        )
    return IResNet(IRESNET_LAYERS[name], dropout=dropout, num_features=num_features, fp16=fp16, **kwargs)
