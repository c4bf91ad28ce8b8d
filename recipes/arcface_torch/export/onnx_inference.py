"""Run recognition models (onnxruntime and PyTorch) on face batches and compare their embeddings.

session = cpu_session("model.onnx")
emb = run_onnx(session, x, batch_size=8)        # x: (N, 3, H, W) float32 -> (N, D)
agreement = compare(emb, reference)             # min row cosine, max abs diff
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

# Everything onnxruntime raises for a model it cannot load or run.
ORT_ERRORS = tuple(
    {
        getattr(_ort_state, name)
        for name in (
            "Fail",
            "InvalidArgument",
            "NoSuchFile",
            "NoModel",
            "EngineError",
            "RuntimeException",
            "InvalidProtobuf",
            "ModelLoaded",
            "NotImplemented",
            "InvalidGraph",
            "EPFail",
        )
        if hasattr(_ort_state, name)
    }
    | {RuntimeError, ValueError}
)


# Accelerated execution providers used when this onnxruntime build has them; CPU always last.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the checks report run failures themselves, in one sentence
    # Idle worker threads must not spin: with two sessions alive (a model and its reference), one session's
    # spinning threads would take the cores from the other and make every side-by-side timing unfair.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def cpu_session(model: str | bytes) -> ort.InferenceSession:
    """An onnxruntime CPU session for a model path or serialised model bytes."""
    options = _options()
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def available_providers() -> list[str]:
    """The preferred providers this onnxruntime build offers (TensorRT, CUDA), then CPU; never empty."""
    present = set(ort.get_available_providers())
    return [name for name in PREFERRED_PROVIDERS if name in present or name == "CPUExecutionProvider"]


def fastest_session(model: str | bytes) -> ort.InferenceSession:
    """A session on the fastest provider present (TensorRT > CUDA > CPU); falls back to CPU if they fail to load."""
    options = _options()
    providers = available_providers()
    if providers != ["CPUExecutionProvider"]:
        try:
            return ort.InferenceSession(model, sess_options=options, providers=providers)
        except ORT_ERRORS:  # e.g. CUDA present in the build but no driver: CPU still answers
            pass
    return cpu_session(model)


def run_onnx(session: ort.InferenceSession, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Embeddings of `x` computed `batch_size` rows at a time; (N, D) float32."""
    name = session.get_inputs()[0].name
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = np.ascontiguousarray(x[start : start + batch_size])
        out = np.asarray(session.run(None, {name: chunk})[0])
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise RuntimeError(
                f"a batch of {len(chunk)} images gave output shape {tuple(out.shape)}, "
                f"not ({len(chunk)}, D): the batch axis does not follow the input"
            )
        outputs.append(out.astype(np.float32))
    return np.concatenate(outputs, axis=0)


@torch.no_grad()
def run_torch(model: torch.nn.Module, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Embeddings of the fp32 eval-mode PyTorch `model` for `x`; (N, D) float32."""
    model.eval()
    outputs = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).float().numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


@dataclass
class Agreement:
    """How closely two (N, D) embedding matrices agree row for row."""

    min_cosine: float
    max_abs_diff: float
    relative_diff: float  # max abs diff / max abs value of the reference

    def within(self, min_cosine: float, max_relative_diff: float | None = None) -> bool:
        ok = np.isfinite(self.min_cosine) and self.min_cosine >= min_cosine
        if max_relative_diff is not None:
            ok = ok and np.isfinite(self.relative_diff) and self.relative_diff <= max_relative_diff
        return bool(ok)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-300)


def compare(candidate: np.ndarray, reference: np.ndarray) -> Agreement:
    """Row-wise agreement of `candidate` with `reference` (same shape)."""
    if candidate.shape != reference.shape:
        raise ValueError(f"embedding shapes differ: {candidate.shape} vs {reference.shape}")
    diff = float(np.max(np.abs(candidate.astype(np.float64) - reference.astype(np.float64))))
    scale = float(np.max(np.abs(reference)))
    return Agreement(float(np.min(row_cosines(candidate, reference))), diff, diff / scale if scale > 0 else diff)
