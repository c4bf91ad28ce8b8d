"""How the backbone trains in a run: its optimizer group, the epochs it is frozen, and its BatchNorm mode.

- `config.backbone_lr_scale` (a): the backbone's group trains at lr * a, the head's groups at lr; the scheduler
  multiplies every group's base LR by the same factor, so at every step the backbone's LR is lr * a * schedule(step).
  The group records its scale (`lr_scale`) so that a resumed run keeps it (TrainingState.restore).
- `config.freeze_backbone_epochs` (N): in epochs 0..N-1 the backbone runs without autograd (no graph, no gradient),
  so the optimizer skips its parameters: no update, no weight decay, no momentum. The head trains as usual.
  BatchNorm follows bn_mode also then (in "train" mode its running statistics still follow the new data).
- `config.bn_mode` "frozen": every BatchNorm layer stays in eval mode whatever train() is called (running statistics
  as loaded, never updated) and its affine parameters (weight, bias) are left out of the optimizer and get no
  gradient: they stay as loaded too. "train" is upstream's behaviour.
"""

from __future__ import annotations

import types

import torch
from torch import nn


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze_batchnorm(backbone: nn.Module) -> list[nn.Parameter]:
    """Every BatchNorm layer of `backbone` into eval mode for good (its train() keeps it in eval) and its affine
    parameters out of autograd; returns those parameters. Call before DistributedDataParallel wraps `backbone`."""
    frozen = []
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train = types.MethodType(_stay_in_eval, module)  # nn.Module.train() calls each child's train()
            module.eval()
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
                frozen.append(parameter)
    return frozen


def backbone_parameter_group(config, backbone: nn.Module) -> dict:
    """The backbone's optimizer group: its parameters (without BatchNorm's affine ones when bn_mode is "frozen"),
    LR lr * backbone_lr_scale. Applies bn_mode to `backbone`."""
    params = list(backbone.parameters())
    if config.bn_mode == "frozen":
        frozen = {id(p) for p in freeze_batchnorm(backbone)}
        params = [p for p in params if id(p) not in frozen]
    scale = float(config.backbone_lr_scale)
    return {"params": params, "lr": config.lr * scale, "lr_scale": scale}


def backbone_frozen(config, epoch: int) -> bool:
    """True in the first config.freeze_backbone_epochs epochs (0-based `epoch`)."""
    return epoch < config.freeze_backbone_epochs


def embed(model: nn.Module, backbone: nn.Module, images: torch.Tensor, frozen: bool) -> torch.Tensor:
    """Embeddings (b, D) of `images` (b, 3, 112, 112): through `model` (the backbone, DDP-wrapped when distributed)
    with autograd, or, when `frozen`, through the bare `backbone` without it (no gradient to synchronise)."""
    if not frozen:
        return model(images)
    with torch.no_grad():
        return backbone(images)
