"""Face-recognition backbones by name, with upstream arcface_torch names and parameter layouts.

model = get_model("r50", dropout=0.0, fp16=False, num_features=512)   # (N, 3, 112, 112) -> (N, 512)
list_models()   # ['mbf', 'mbf_large', 'r100', 'r18', 'r200', 'r34', 'r50', 'tiny']
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .iresnet import IRESNET_LAYERS, IBasicBlock, IResNet, iresnet
from .mobilefacenet import MobileFaceNet, get_mbf, get_mbf_large
from .tiny_facenet import TinyFaceNet

__all__ = [
    "get_model",
    "list_models",
    "IResNet",
    "IBasicBlock",
    "MobileFaceNet",
    "get_mbf",
    "get_mbf_large",
    "TinyFaceNet",
]


def _mobilefacenet(
    build: Callable[..., MobileFaceNet],
    name: str,
    dropout: float = 0.0,
    fp16: bool = False,
    num_features: int = 512,
    **kwargs,
) -> MobileFaceNet:
    if dropout:
        raise ValueError(f"backbone {name!r} has no dropout layer, got dropout={dropout!r}; set dropout to 0.0")
    unknown = sorted(set(kwargs) - {"blocks", "scale"})
    if unknown:
        raise ValueError(
            f"backbone {name!r} got unknown option(s) {', '.join(unknown)}; its extra options are blocks and scale"
        )
    return build(fp16, num_features, **kwargs)


# name -> builder(dropout=..., fp16=..., num_features=..., **kwargs)
_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    **{name: partial(iresnet, name) for name in IRESNET_LAYERS},
    "mbf": partial(_mobilefacenet, get_mbf, "mbf"),
    "mbf_large": partial(_mobilefacenet, get_mbf_large, "mbf_large"),
    "tiny": TinyFaceNet,  # CPU demos and tests; not an upstream architecture
}


def list_models() -> list[str]:
    """Names accepted by `get_model`, sorted."""
    return sorted(_BACKBONES)


def get_model(
    name: str,
    dropout: float = 0.0,
    fp16: bool = False,
    num_features: int = 512,
    amp_dtype: torch.dtype | None = None,
    **kwargs,
) -> nn.Module:
    """Build backbone `name` mapping (N, 3, 112, 112) faces to (N, num_features) embeddings.

    dropout: drop probability before the embedding layer (IResNet only; must be 0 for mbf).
    fp16: half-precision autocast for the convolutional trunk (the embedding layers stay float32, as upstream):
        `amp_dtype`, or with amp_dtype None float16 when the input is on CUDA.
    kwargs: backbone extras (IResNet: zero_init_residual; MobileFaceNet: blocks, scale).
    """
    if isinstance(name, str) and name.startswith("vit"):
        raise ValueError(
            f"network {name!r} is one of upstream arcface_torch's ViT backbones, which this recipe does not "
            f"build; set config.network to one of: {', '.join(list_models())}"
        )
    if not isinstance(name, str) or name not in _BACKBONES:
        close = difflib.get_close_matches(str(name), list(_BACKBONES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_models())}.{hint}")
    model = _BACKBONES[name](dropout=dropout, fp16=fp16, num_features=num_features, **kwargs)
    model.amp_dtype = amp_dtype
    return model
