"""A converted model side by side with its reference: size, latency, per-face cosine and .bin accuracy.

The reference is the model it was converted from: an ONNX file or a PyTorch checkpoint (model.pt or
a training folder). With a verification .bin, both models' 10-fold accuracy (with flip, as training reports it)
and TAR at FAR 1e-3 are measured and the verdict is the accuracy change: the candidate may lose at most
`max_accuracy_drop` points; the per-face cosine between the two embeddings on real aligned faces is reported beside
it. Without a .bin (or with an explicit `min_cosine`) the cosine decides: it must reach the candidate precision's
bound (fp32 0.9999, fp16 0.999, int8 0.98).
Latency: median per batch size on the fastest onnxruntime provider present (TensorRT, CUDA, else CPU).

    comparison = compare_models(Path("model_int8.onnx"), Path("model.onnx"), faces_bgr, bin_path=Path("x.bin"))
    print(comparison.table()); comparison.checks()
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ..face_image import to_network_input
from .backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
from .onnx_checks import FAIL, INFO, PASS, Check
from .onnx_embedder import OnnxEmbedder
from .onnx_inference import row_cosines
from .onnx_precision import MIN_COSINE, precision_of
from .onnx_preprocessing import expected_preprocessing
from .options import DEFAULT_MAX_ACCURACY_DROP

LATENCY_BATCH_SIZES = (1, 8, 32)
TAR_FAR = 1e-3
DEFAULT_INT8_MIN_COSINE = MIN_COSINE["int8"]


def cosine_is_gate(bin_path, min_cosine: float | None) -> bool:
    """Whether the per-face cosine decides the verdict: without a labelled set (--bin) it is the only evidence;
    with one, the accuracy change decides and the cosine is reported, unless --min-cosine was given explicitly."""
    return min_cosine is not None or not bin_path


class ComparisonError(ValueError):
    """The reference cannot be loaded (one sentence naming the fix)."""


@dataclass
class Variant:
    """One model in the comparison and what was measured on it."""

    role: str  # "reference" or "candidate"
    path: Path
    precision: str  # fp32 / fp16 / int8 ("fp32 (PyTorch)" for a checkpoint)
    size_bytes: int
    runtime: str  # onnxruntime provider, or "PyTorch CPU"
    embed: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    module: torch.nn.Module = field(repr=False)
    latency_ms: dict[int, float | None] = field(default_factory=dict)
    accuracy: float | None = None  # 10-fold mean, fraction
    accuracy_std: float | None = None
    tar: float | None = None  # TAR at TAR_FAR
    tar_note: str = ""


@dataclass
class Comparison:
    reference: Variant
    candidate: Variant
    cosines: np.ndarray  # (faces,) per-face cosine, candidate vs reference
    faces_from: str
    min_cosine: float
    max_accuracy_drop: float
    bin_name: str | None = None
    num_pairs: int = 0
    cosine_gates: bool = True  # False when a labelled set (--bin) decides and no --min-cosine was given

    @property
    def accuracy_drop(self) -> float | None:
        """Reference minus candidate accuracy in percentage points (positive: the candidate is worse)."""
        if self.reference.accuracy is None or self.candidate.accuracy is None:
            return None
        return 100.0 * (self.reference.accuracy - self.candidate.accuracy)

    def checks(self) -> list[Check]:
        worst, mean = float(np.min(self.cosines)), float(np.mean(self.cosines))
        numbers = {
            "faces": len(self.cosines),
            "min_cosine": worst,
            "mean_cosine": mean,
            "threshold": self.min_cosine,
            "reference": str(self.reference.path),
        }
        text = (
            f"{self.candidate.precision} vs {self.reference.precision} {self.reference.path.name}: per-face "
            f"cosine worst {worst:.6f}, mean {mean:.6f} over {len(self.cosines)} faces ({self.faces_from})"
        )
        ok = bool(np.isfinite(worst) and worst >= self.min_cosine)
        if not self.cosine_gates:  # the accuracy on the labelled set below is the verdict; the cosine is reported
            numbers["gate"] = False
            note = "within" if ok else "below"
            checks = [
                Check(
                    "compare",
                    INFO if np.isfinite(worst) else FAIL,
                    f"{text} ({note} the unlabelled bound {self.min_cosine}; reported only: the accuracy on "
                    f"{self.bin_name} decides, pass --min-cosine to gate on the cosine as well)"
                    if np.isfinite(worst)
                    else f"{text}; the model produced non-finite embeddings",
                    numbers,
                )
            ]
        else:
            checks = [
                Check(
                    "compare",
                    PASS if ok else FAIL,
                    f"{text} (bound >= {self.min_cosine})"
                    if ok
                    else f"{text} (< {self.min_cosine}); the conversion changed the embeddings too much: keep fp32 "
                    f"or fp16, calibrate int8 on more faces (--calibration), check the accuracy on a labelled set "
                    f"(--bin), or lower --min-cosine knowingly",
                    numbers,
                )
            ]
        drop = self.accuracy_drop
        if drop is not None:
            numbers = {
                "bin": self.bin_name,
                "pairs": self.num_pairs,
                "reference_accuracy": self.reference.accuracy,
                "candidate_accuracy": self.candidate.accuracy,
                "drop_points": drop,
                "max_drop_points": self.max_accuracy_drop,
                "reference_tar": self.reference.tar,
                "candidate_tar": self.candidate.tar,
            }
            text = (
                f"{self.bin_name} ({self.num_pairs} pairs): accuracy {100 * self.reference.accuracy:.2f}% -> "
                f"{100 * self.candidate.accuracy:.2f}% ({0.0 - drop:+.2f} points)"
            )
            ok = drop <= self.max_accuracy_drop + 1e-9
            checks.append(
                Check(
                    "accuracy",
                    PASS if ok else FAIL,
                    f"{text}, bound: at most {self.max_accuracy_drop:g} points lost"
                    if ok
                    else f"{text}, more than the {self.max_accuracy_drop:g} points allowed; keep a higher "
                    f"precision or calibrate int8 on faces like these (--calibration)",
                    numbers,
                )
            )
        return checks

    def table(self) -> str:
        ref, cand = self.reference, self.candidate
        rows = [
            ("", "reference", "candidate", "difference"),
            ("model", ref.path.name, cand.path.name, ""),
            ("precision", ref.precision, cand.precision, ""),
            ("runtime", ref.runtime, cand.runtime, ""),
            ("size", _mib(ref.size_bytes), _mib(cand.size_bytes), _ratio(cand.size_bytes, ref.size_bytes)),
        ]
        for size in LATENCY_BATCH_SIZES:
            a, b = ref.latency_ms.get(size), cand.latency_ms.get(size)
            rows.append((f"latency batch {size}", _ms(a), _ms(b), _ratio(b, a)))
        rows.append(
            (
                f"cosine to reference ({len(self.cosines)} faces)",
                "1 (itself)",
                f"worst {np.min(self.cosines):.5f} mean {np.mean(self.cosines):.5f}",
                f"bound >= {self.min_cosine:g}" if self.cosine_gates else f"reported (bound {self.min_cosine:g})",
            )
        )
        if self.bin_name is not None:
            drop = self.accuracy_drop
            rows.append(
                (
                    f"accuracy {self.bin_name} (10-fold, flip)",
                    _percent(ref.accuracy, ref.accuracy_std),
                    _percent(cand.accuracy, cand.accuracy_std),
                    f"{0.0 - drop:+.2f} pt (bound -{self.max_accuracy_drop:g})" if drop is not None else "-",
                )
            )
            tar_diff = (
                "-"
                if ref.tar is None or cand.tar is None or not (math.isfinite(ref.tar) and math.isfinite(cand.tar))
                else f"{100 * (cand.tar - ref.tar):+.2f} pt"
            )
            rows.append((f"TAR@FAR={TAR_FAR:g}", _percent(ref.tar), _percent(cand.tar), tar_diff))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
        notes = {v.tar_note for v in (ref, cand) if v.tar_note}
        return "\n".join(lines + [f"(TAR@FAR={TAR_FAR:g} not measurable: {note})" for note in sorted(notes)])

    def as_dict(self) -> dict:
        def variant(v: Variant) -> dict:
            return {
                "model": str(v.path),
                "precision": v.precision,
                "size_bytes": v.size_bytes,
                "runtime": v.runtime,
                "latency_ms": {str(k): ms for k, ms in v.latency_ms.items()},
                "accuracy": v.accuracy,
                "accuracy_std": v.accuracy_std,
                "tar_at_far_1e-3": None if v.tar is None or not math.isfinite(v.tar) else v.tar,
            }

        return {
            "reference": variant(self.reference),
            "candidate": variant(self.candidate),
            "min_cosine": float(np.min(self.cosines)),
            "mean_cosine": float(np.mean(self.cosines)),
            "cosine_bound": self.min_cosine,
            "cosine_gates": self.cosine_gates,
            "bin": self.bin_name,
            "pairs": self.num_pairs,
            "accuracy_drop_points": self.accuracy_drop,
            "max_accuracy_drop_points": self.max_accuracy_drop,
        }


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}x"


def _percent(value: float | None, std: float | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:.2f}%" + (f" +- {100 * std:.2f}" if std is not None else "")


def _interleaved_median_ms(runners, x: np.ndarray, runs: int) -> list[float | None]:
    """Median milliseconds per runner on `x`, timed in turn (A, B, A, B, ...) so load changes hit both alike;
    None for a runner that cannot run `x` (e.g. a batch frozen at 1)."""
    usable = []
    for run in runners:
        try:
            run(x)
            run(x)  # warm-up: first runs allocate buffers and spin up threads
            usable.append(True)
        except (RuntimeError, ValueError):
            usable.append(False)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(runs):
        for index, run in enumerate(runners):
            if usable[index]:
                start = time.perf_counter()
                run(x)
                times[index].append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(t) if t else None for t in times]


def _onnx_variant(role: str, path: Path, accelerated: bool) -> Variant:
    embedder = OnnxEmbedder(path, accelerated=accelerated)
    model = onnx.load(str(path), load_external_data=False)
    extra = sum(p.stat().st_size for p in path.parent.glob(path.name + ".data"))
    runtime = embedder.provider.replace("ExecutionProvider", "")
    return Variant(
        role, path, precision_of(model), path.stat().st_size + extra, f"onnxruntime {runtime}", embedder.embed, embedder
    )


def _torch_variant(path: Path, network: str | None, embedding_size: int | None, metadata: dict[str, str]) -> Variant:
    try:
        source = resolve_checkpoint(path)
        name = source.network(network or (None if source.config.get("network") else metadata.get("network")))
        size = embedding_size or (
            None
            if "embedding_size" in source.config
            else int(metadata["embedding_size"])
            if "embedding_size" in metadata
            else None
        )
        backbone = build_backbone(name, source.embedding_size(size), source.state_dict())
    except CheckpointError as error:
        raise ComparisonError(str(error)) from error

    @torch.no_grad()
    def embed(x: np.ndarray) -> np.ndarray:
        return backbone(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()

    return Variant(
        "reference",
        Path(source.model_path),
        "fp32 (PyTorch)",
        source.model_path.stat().st_size,
        "PyTorch CPU",
        embed,
        backbone,
    )


def load_reference(
    path: Path,
    network: str | None = None,
    embedding_size: int | None = None,
    metadata: dict[str, str] | None = None,
    accelerated: bool = True,
) -> Variant:
    """The reference model: an .onnx file, or a model.pt / training folder (network from config or metadata)."""
    path = Path(path)
    if not path.exists():
        raise ComparisonError(
            f"reference {path} does not exist; pass the .onnx file or model.pt the model was converted from"
        )
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _onnx_variant("reference", path, accelerated)
    return _torch_variant(path, network, embedding_size, metadata or {})


def compare_models(
    candidate: Path,
    reference: Variant,
    faces_bgr: np.ndarray,
    faces_from: str,
    *,
    bin_path: Path | None = None,
    min_cosine: float | None = None,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    runs: int = 5,
    accelerated: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> Comparison:
    """Measure `candidate` (an .onnx file) against `reference` on `faces_bgr` and, when given, on `bin_path`."""
    cand = _onnx_variant("candidate", Path(candidate), accelerated)
    model = onnx.load(str(candidate), load_external_data=False)
    expected = expected_preprocessing(model)
    x = to_network_input(faces_bgr, expected.mean, expected.std)
    bound = min_cosine if min_cosine is not None else MIN_COSINE[cand.precision]
    progress(f"per-face cosine on {len(x)} faces")
    cosines = row_cosines(cand.embed(x), reference.embed(x))
    progress(f"latency at batch sizes {', '.join(map(str, LATENCY_BATCH_SIZES))}, reference and candidate in turn")
    for size in LATENCY_BATCH_SIZES:
        batch = np.ascontiguousarray(np.resize(x, (size, *x.shape[1:])))
        latencies = _interleaved_median_ms((reference.embed, cand.embed), batch, runs)
        reference.latency_ms[size], cand.latency_ms[size] = latencies
    comparison = Comparison(
        reference,
        cand,
        cosines,
        faces_from,
        bound,
        max_accuracy_drop,
        cosine_gates=min_cosine is not None or not bin_path,
    )
    if bin_path is not None:
        from ..evaluation.bin_file import load_bin
        from ..evaluation.verification import evaluate

        vset = load_bin(bin_path, name=Path(bin_path).stem)
        comparison.bin_name, comparison.num_pairs = Path(bin_path).name, vset.num_pairs
        for variant in (reference, cand):
            progress(f"10-fold accuracy of the {variant.role} on {vset.num_pairs} pairs of {Path(bin_path).name}")
            result = evaluate(variant.module, vset, batch_size=64, fars=(TAR_FAR,))
            variant.accuracy, variant.accuracy_std = result["accuracy"], result["accuracy_std"]
            variant.tar, variant.tar_note = result["tar_at_far"][TAR_FAR], result["tar_at_far_notes"][TAR_FAR]
    return comparison
