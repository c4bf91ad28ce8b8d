"""Defaults and checks of the ONNX tools' options, importable before onnx, onnxruntime or torch (so --help is instant)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_OPSET = 18
MIN_OPSET = 11  # the lowest opset this project writes
DYNAMO_MIN_OPSET = 18  # below this the TorchScript exporter writes the requested opset natively
DEFAULT_MAX_ACCURACY_DROP = 0.5  # percentage points of 10-fold accuracy a conversion may lose on --bin


def comparison_argument_error(bin_path, min_cosine: float | None, max_accuracy_drop: float) -> str | None:
    """The one-line problem with the comparison options shared by verify_onnx and convert_onnx, or None."""
    if min_cosine is not None and not -1.0 <= min_cosine <= 1.0:
        return f"--min-cosine {min_cosine} is not a cosine; pass a value in [-1, 1] such as 0.99"
    if not max_accuracy_drop >= 0:
        return f"--max-accuracy-drop {max_accuracy_drop} is negative; pass points of accuracy such as 0.5"
    if bin_path and not Path(bin_path).is_file():
        return f"--bin {bin_path} does not exist; pass a verification .bin file (tools/make_bin.py writes one)"
    return None
