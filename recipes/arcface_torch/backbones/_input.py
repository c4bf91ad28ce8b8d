"""Input validation and the half-precision trunk context shared by the face backbones."""

from __future__ import annotations

from contextlib import nullcontext

import torch

FACE_SIZE = 112


def check_face_batch(x: torch.Tensor, model_name: str) -> None:
    """Raise a clear error unless `x` is a floating-point face batch of shape (N, 3, 112, 112).

    Skipped while tracing, where sizes are symbolic and comparing them would freeze the graph.
    """
    if torch.jit.is_tracing():
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{model_name} expects a torch.Tensor of shape (N, 3, 112, 112), got {type(x).__name__}; "
            f"convert images with torch.as_tensor first"
        )
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != FACE_SIZE or x.shape[3] != FACE_SIZE:
        raise ValueError(
            f"{model_name} expects a face batch of shape (N, 3, {FACE_SIZE}, {FACE_SIZE}), got "
            f"{tuple(x.shape)}; align faces to {FACE_SIZE}x{FACE_SIZE} RGB and stack them channels-first"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{model_name} expects a floating-point batch, got dtype {x.dtype}; "
            f"normalise pixels as (x.float() - 127.5) / 127.5"
        )


def trunk_autocast(fp16: bool, amp_dtype: torch.dtype | None, x: torch.Tensor):
    """Autocast context for a backbone's convolutional trunk: `amp_dtype` when `fp16`, or with amp_dtype None
    float16 on CUDA only (upstream's behaviour). The embedding layers after it run in float32, as upstream.
    Returns (context, enabled)."""
    dtype = amp_dtype if amp_dtype is not None else (torch.float16 if x.is_cuda else None)
    if not fp16 or dtype is None:
        return nullcontext(), False  # autocast only when enabled: devices such as 'meta' reject even a disabled one
    return torch.autocast(device_type=x.device.type, dtype=dtype), True
