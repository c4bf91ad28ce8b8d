"""An ONNX recognition model behind the nn.Module interface, so evaluation code runs it like a backbone.

fp32, fp16 and int8 models alike take float32 (N, 3, H, W) and return float32 (N, D) (what
tools/convert_onnx.py writes); a model whose input is float16 is refused with the conversion that
fixes it. A model whose batch axis is fixed, or frozen inside the graph (an upstream torch2onnx.py
export), is run one fixed-size chunk at a time.

    model = OnnxEmbedder(Path("model_int8.onnx"))
    emb = model(x)                     # x: float32 tensor (N, 3, 112, 112) -> (N, D) float32
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .onnx_inference import ORT_ERRORS, cpu_session, fastest_session


class OnnxEmbedder(nn.Module):
    """Runs an ONNX recognition model with onnxruntime (fastest provider present, CPU by default)."""

    def __init__(self, path: Path, accelerated: bool = False) -> None:
        super().__init__()
        path = Path(path)
        try:
            self.session = fastest_session(str(path)) if accelerated else cpu_session(str(path))
        except ORT_ERRORS as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"onnxruntime cannot load {path} ({first}); check that it is a valid ONNX model"
            ) from error
        model_input = self.session.get_inputs()[0]
        if model_input.type == "tensor(float16)":
            raise ValueError(
                f"{path} takes a float16 input; convert the fp32 model with "
                f"`tools/convert_onnx.py --fp16`, which keeps float32 inputs and outputs"
            )
        if model_input.type != "tensor(float)":
            raise ValueError(
                f"{path} takes a {model_input.type} input, not float32; export a model with a float32 image input"
            )
        self.input_name = model_input.name
        batch = model_input.shape[0] if model_input.shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0])
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise RuntimeError(f"a batch of {len(chunk)} gave output shape {out.shape}")
        return out.astype(np.float32)

    def embed(self, array: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> float32 (N, D), in chunks of the model's fixed batch when it has one."""
        if self.fixed_batch is None and len(array) > 1:
            try:
                return self._run(array)
            except (*ORT_ERRORS, RuntimeError):  # batch frozen inside the graph: one image at a time
                self.fixed_batch = 1
        step = self.fixed_batch or max(1, len(array))
        outputs = []
        for start in range(0, len(array), step):
            chunk = array[start : start + step]
            padding = step - len(chunk)
            if padding:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], padding, axis=0)])
            outputs.append(self._run(chunk)[: step - padding])
        return np.concatenate(outputs, axis=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to(device="cpu", dtype=torch.float32).numpy()
        return torch.from_numpy(self.embed(array)).to(device=x.device)
