"""Load a trained backbone from a `model.pt` or a training output folder, safely and strictly.

A training output folder holds `model.pt` (a plain backbone state_dict) and `config.json` (the
resolved training config: network, embedding_size, loss, config_name, ...). Checkpoints are read
with `weights_only=True`, so a file from the internet cannot run code.

    source = resolve_checkpoint("work_dirs/synthetic_mbf_unpg")    # or ".../model.pt"
    backbone = build_backbone(source.network(), source.embedding_size(), source.state_dict())
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, checkpoint_path, checkpoint_steps

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
DEFAULT_EMBEDDING_SIZE = 512
# where training-state checkpoints keep the backbone: upstream train_v2, this recipe, common wrappers
BACKBONE_KEYS = ("state_dict_backbone", "backbone", "state_dict", "model")
# what a run folder may hold the backbone in, in order of preference: model.pt, then rank 0's newest checkpoint
# (ours: checkpoint_step<N>_rank0.pt, an earlier version's, upstream's)
FOLDER_FILES = (MODEL_FILE, "checkpoint_step*_rank0.pt", "checkpoint_rank0.pt", "checkpoint_gpu_0.pt")


@dataclass
class CheckpointSource:
    """A `model.pt` plus, when one sits beside it, the training `config.json`."""

    model_path: Path
    config: dict = field(default_factory=dict)
    config_path: Path | None = None

    def network(self, override: str | None = None) -> str:
        """The backbone name: `override`, else the config's `network`."""
        if override:
            return override
        network = self.config.get("network")
        if not network:
            where = (
                f"{self.config_path} has no 'network' key"
                if self.config_path
                else f"no {CONFIG_FILE} beside {self.model_path}"
            )
            raise CheckpointError(
                f"cannot tell which backbone {self.model_path} holds ({where}); pass --network, e.g. --network r50"
            )
        return str(network)

    def embedding_size(self, override: int | None = None) -> int:
        """The embedding size: `override`, else the config's `embedding_size`, else 512."""
        if override:
            return int(override)
        return int(self.config.get("embedding_size", DEFAULT_EMBEDDING_SIZE))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_state_dict(self.model_path)


def read_training_config(path: Path) -> dict:
    """The JSON object in a training output's config.json."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeError) as error:
        raise CheckpointError(
            f"cannot read training config {path} ({error}); check the file or pass --network explicitly"
        ) from error
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"training config {path} is not valid JSON ({error.msg} at line {error.lineno}); "
            f"restore it from the training run or pass --network explicitly"
        ) from error
    if not isinstance(config, dict):
        raise CheckpointError(
            f"training config {path} holds a {type(config).__name__}, not a JSON object; "
            f"restore it from the training run"
        )
    return config


def resolve_checkpoint(path: str | Path) -> CheckpointSource:
    """A `model.pt` file, or a training output folder holding one (else rank 0's newest training checkpoint, ours
    or upstream's: every rank holds the same backbone); reads config.json when present."""
    path = Path(path)
    if path.is_dir():
        steps = checkpoint_steps(path, 0)
        newest = [checkpoint_path(path, 0, steps[-1])] if steps else []
        found = [path / MODEL_FILE] if (path / MODEL_FILE).is_file() else []
        found += newest + [path / name for name in FOLDER_FILES[2:] if (path / name).is_file()]
        if not found:
            raise CheckpointError(
                f"training output folder {path} has no {MODEL_FILE} (nor {' or '.join(FOLDER_FILES[1:])}); "
                f"pass the folder a training run wrote, or the .pt file itself"
            )
        model_path = found[0]
    elif path.is_file():
        model_path = path
    else:
        raise CheckpointError(f"checkpoint {path} does not exist; pass a model.pt file or a training output folder")
    config_path = model_path.parent / CONFIG_FILE
    if config_path.is_file():
        return CheckpointSource(model_path, read_training_config(config_path), config_path)
    return CheckpointSource(model_path)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain backbone state_dict from `path`, loaded without running pickled code."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} does not exist; pass a model.pt file") from error
    except Exception as error:  # torch.load raises many types for corrupt or unsafe files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot load {path} as a weights-only torch checkpoint ({first_line}); "
            f"pass the model.pt a training run saved (a plain state_dict)"
        ) from error
    if isinstance(state, dict):  # a training-state checkpoint: take its backbone part
        for key in BACKBONE_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__} that is not a state_dict of tensors; "
            f"pass the backbone model.pt a training run saved"
        )
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, ..." if len(names) > limit else shown


@dataclass
class StateDictMismatch:
    """How a state_dict differs from a model's: keys it lacks, keys the model lacks, and
    (key, shape in the state_dict, shape in the model) for keys of another shape."""

    missing: list[str]
    unexpected: list[str]
    misshaped: list[tuple[str, tuple, tuple]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def describe(self) -> str:
        """'3 missing keys: a, b, c; 1 key of another shape: fc.weight (128, 6272) in the file vs (512, 6272)'."""
        parts = []
        if self.missing:
            parts.append(f"{_count(self.missing, 'missing key')}: {_preview(self.missing)}")
        if self.unexpected:
            parts.append(f"{_count(self.unexpected, 'unexpected key')}: {_preview(self.unexpected)}")
        if self.misshaped:
            shapes = [f"{key} {file} in the file vs {model}" for key, file, model in self.misshaped]
            parts.append(f"{_count(shapes, 'key')} of another shape: {_preview(shapes, 3)}")
        return "; ".join(parts)


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def compare_state_dict(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> StateDictMismatch:
    """The differences between `state` and the state_dict `expected` of the model it should load into."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        (key, tuple(state[key].shape), tuple(expected[key].shape))
        for key in set(expected) & set(state)
        if tuple(expected[key].shape) != tuple(state[key].shape)
    )
    return StateDictMismatch(missing, unexpected, misshaped)


def state_dict_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """None when `state` fits `model` exactly; otherwise a sentence counting and naming missing / unexpected /
    mis-shaped keys."""
    mismatch = compare_state_dict(model.state_dict(), state)
    return mismatch.describe() if mismatch else None


def identify_backbone(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """(network, embedding size) of the registered backbone whose state_dict has exactly the keys and shapes of
    `state`, or None. Candidate models are built on the meta device (names and shapes only, no memory)."""
    from ..backbones import list_models

    sizes = [int(v.shape[0]) for k, v in state.items() if v.dim() == 1 and k.startswith("features")]
    sizes += [int(v.shape[0]) for v in state.values() if v.dim() == 1][-1:]  # the last vector: the embedding BN
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for network in list_models():
        for size in dict.fromkeys(sizes):
            if _meta_shapes(network, size) == shapes:
                return network, size
    return None


@functools.lru_cache(maxsize=64)
def _meta_shapes(network: str, embedding_size: int) -> dict[str, tuple] | None:
    """{key: shape} of backbone `network`'s state_dict, built on the meta device; None if it cannot be built."""
    from ..backbones import get_model

    try:
        with torch.device("meta"):
            model = get_model(network, num_features=embedding_size)
    except ValueError:
        return None
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def build_backbone(network: str, embedding_size: int, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The fp32 eval-mode backbone `network` with `state` loaded; CheckpointError names any key mismatch."""
    from ..backbones import get_model

    try:
        model = get_model(network, dropout=0.0, fp16=False, num_features=int(embedding_size))
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"checkpoint does not fit backbone {network!r} with embedding size {embedding_size} "
            f"({problem}); pass the --network and --embedding-size it was trained with"
        )
    model.load_state_dict(state, strict=True)
    return model.float().eval()
