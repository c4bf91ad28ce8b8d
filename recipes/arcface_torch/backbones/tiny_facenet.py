"""TinyFaceNet: a small CNN for CPU demos and tests (not an upstream architecture).

(N, 3, 112, 112) -> four stride-2 stages (56, 28, 14, 7) of conv-BN-PReLU pairs -> BN -> flatten ->
linear -> BatchNorm1d -> (N, num_features). About 30x fewer multiply-adds than MobileFaceNet, so the
embedded synthetic demo trains in minutes on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

from ._input import check_face_batch, trunk_autocast


def _conv_bn_prelu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]


class TinyFaceNet(nn.Module):
    def __init__(
        self,
        num_features: int = 128,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.0,
        fp16: bool = False,
    ):
        super().__init__()
        layers, cin = [], 3
        for width in widths:
            layers += _conv_bn_prelu(cin, width, 2) + _conv_bn_prelu(width, width, 1)
            cin = width
        self.body = nn.Sequential(*layers, nn.BatchNorm2d(cin))
        side = 112 // 2 ** len(widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features)
        self.fp16 = fp16
        self.amp_dtype: torch.dtype | None = None  # half type of the trunk; None: float16 on CUDA only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_face_batch(x, "tiny")
        amp, _ = trunk_autocast(self.fp16, self.amp_dtype, x)
        with amp:
            x = self.body(x)
        x = torch.flatten(x.float(), 1)
        return self.features(self.fc(self.dropout(x)))
