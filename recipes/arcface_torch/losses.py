"""The loss registry (`config.loss`) and the partial-FC head built from a config.

A registered loss is a builder `config -> partial-FC loss (plugins.partial_fc.PartialFCLoss) or None`,
registered with its options' defaults (the section `config.<name>`). `config.loss` is one name or a list of
names composed in order (e.g. ["magface", "unpg"]); the head is always partial FC with the margin of
`config.margin_list` (unless a loss defines the target logit itself, as magface and npcface do).
Plugins named in `config.plugins` add their losses by `module.register(LOSSES)`.
"""

from __future__ import annotations

import importlib

from plugins.partial_fc import PartialFC

from .margin_loss import CombinedMarginLoss
from .registry import Registry, RegistryError

LOSSES = Registry("loss")
_loaded_plugins: set[str] = set()


@LOSSES.register("margin_softmax")
def margin_softmax(config):
    """Plain margin softmax (ArcFace / CosFace / combined by margin_list): no extra loss."""
    return None


def load_plugins(module_names) -> None:
    """Import each plugin module once and let it register its losses."""
    for name in module_names:
        if name in _loaded_plugins:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise RegistryError(
                f"plugin {name!r} in config.plugins cannot be imported ({error}); "
                f"fix the module path or remove it from config.plugins"
            ) from error
        if not hasattr(module, "register"):
            raise RegistryError(
                f"plugin {name!r} has no register(registry) function; add one or remove it from config.plugins"
            )
        module.register(LOSSES)
        _loaded_plugins.add(name)


def loss_names(config) -> list[str]:
    """config.loss as a list of names: "unpg" -> ["unpg"]; ["magface", "unpg"] stays."""
    names = [config.loss] if isinstance(config.loss, str) else list(config.loss)
    if not names or not all(isinstance(name, str) for name in names):
        raise RegistryError(
            f"loss={config.loss!r} must be a loss name or a non-empty list of names, e.g. 'unpg' or ['magface', 'unpg']"
        )
    if len(set(names)) != len(names):
        raise RegistryError(f"loss={config.loss!r} names a loss twice; list each loss once")
    return names


def build_losses(config) -> list:
    """The partial-FC losses of config.loss, in order (builders returning None add nothing)."""
    load_plugins(config.plugins)
    losses = [LOSSES.get(name)(config) for name in loss_names(config)]
    return [loss for loss in losses if loss is not None]


def build_margin(config) -> CombinedMarginLoss:
    m1, m2, m3 = config.margin_list
    return CombinedMarginLoss(
        config.scale, m1, m2, m3, config.interclass_filtering_threshold, gradient=config.margin_gradient
    )


def build_head(config, num_classes: int, fp16: bool = False) -> PartialFC:
    """Partial-FC head for `config.loss`; call after torch.distributed is initialised (it shards by rank).
    `fp16` runs the head's cosine matmul under autocast; the trainer passes False, as upstream's train_v2
    builds PartialFC_V2 with fp16=False and keeps the head in fp32."""
    return PartialFC(
        build_margin(config),
        config.embedding_size,
        num_classes,
        config.sample_rate,
        fp16,
        losses=build_losses(config),
        head_chunk=config.head_chunk,
        head_chunk_budget=config.head_chunk_budget,
    )
