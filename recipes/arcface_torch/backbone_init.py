"""A new run's backbone from another run's weights (`config.init_backbone`), loaded strictly.

The source is a plain `model.pt` state_dict (ours, or insightface's released files: upstream parameter names), one
of our `checkpoint_step<N>_rank<r>.pt` or upstream's `checkpoint_gpu_<r>.pt` (their `state_dict_backbone`), or a run
folder (its model.pt, else rank 0's newest checkpoint). It is read by the export tools' loader (export/backbone_checkpoint.py:
weights_only, so a file from the internet cannot run code) and must fit `config.network` with
`config.embedding_size` key for key and shape for shape; a mismatch is one line that counts the keys, names the
first ones and, when the file is another registered backbone, says which keys to change.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, non_finite_tensors
from .export.backbone_checkpoint import compare_state_dict, identify_backbone, resolve_checkpoint


def load_init_backbone(config, backbone: torch.nn.Module) -> Path:
    """Load `config.init_backbone` into `backbone` (strict); returns the file it was read from.
    CheckpointError (one line, naming the key to change) when the file is missing, unsafe or does not fit."""
    where = f"init_backbone={config.init_backbone!r}"
    try:
        source = resolve_checkpoint(config.init_backbone)
        state = source.state_dict()
    except CheckpointError as error:
        raise CheckpointError(f"{where}: {error}") from error
    mismatch = compare_state_dict(backbone.state_dict(), state)
    if mismatch:
        raise CheckpointError(
            f"{where}: {source.model_path} does not fit network {config.network!r} with embedding_size "
            f"{config.embedding_size} ({mismatch.describe()}); {likely_cause(config, state, source.config)}"
        )
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{where}: {source.model_path} holds NaN/Inf in {len(bad)} tensor(s) ({', '.join(bad[:3])}); start "
            f"from the last finite checkpoint of that run"
        )
    backbone.load_state_dict(state, strict=True)
    return source.model_path


def likely_cause(config, state: dict[str, torch.Tensor], trained_with: dict) -> str:
    """What to change so that `state` fits: the registered backbone it is (or its run's config.json says it is),
    else a hint that it is none of them."""
    found = identify_backbone(state)
    if found is None and trained_with.get("network"):
        found = (str(trained_with["network"]), int(trained_with.get("embedding_size", config.embedding_size)))
        what = f"its run's config.json says network {found[0]!r} with embedding_size {found[1]}"
    elif found is not None:
        what = f"the file holds a {found[0]!r} backbone with embedding_size {found[1]}"
    else:
        from .backbones import list_models

        return (
            f"it is none of this recipe's backbones ({', '.join(list_models())}) at any embedding size in it; "
            f"set config.network to the architecture that wrote it, with upstream arcface_torch's parameter names"
        )
    changes = [f"network = {found[0]!r}"] if found[0] != config.network else []
    changes += [f"embedding_size = {found[1]}"] if found[1] != config.embedding_size else []
    if not changes:
        return f"{what}, as configured: the file is damaged, restore it from the run that wrote it"
    return f"{what}: set config.{' and config.'.join(changes)}"
