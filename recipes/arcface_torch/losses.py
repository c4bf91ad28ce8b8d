"""The loss registry (`config.loss`) and the partial-FC head built from a config.

A registered loss is a builder `config -> negative-pair hook or None`; the head is always partial FC
with the margin of `config.margin_list`, so "unpg" adds UNPG's negatives to whichever margin is chosen.
Plugins named in `config.plugins` add their losses by `module.register(LOSSES)`.
"""
from __future__ import annotations

import importlib

from plugins.unpg.partial_fc import PartialFC

from .margin_loss import CombinedMarginLoss
from .registry import Registry, RegistryError

LOSSES = Registry("loss")
_loaded_plugins: set[str] = set()


@LOSSES.register("margin_softmax")
def margin_softmax(config):
    """Plain margin softmax (ArcFace / CosFace / combined by margin_list): no extra negatives."""
    return None


def load_plugins(module_names) -> None:
    """Import each plugin module once and let it register its losses."""
    for name in module_names:
        if name in _loaded_plugins:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise RegistryError(f"plugin {name!r} in config.plugins cannot be imported ({error}); "
                                f"fix the module path or remove it from config.plugins") from error
        if not hasattr(module, "register"):
            raise RegistryError(f"plugin {name!r} has no register(registry) function; add one or remove it from config.plugins")
        module.register(LOSSES)
        _loaded_plugins.add(name)


def build_margin(config) -> CombinedMarginLoss:
    m1, m2, m3 = config.margin_list
    return CombinedMarginLoss(config.scale, m1, m2, m3, config.interclass_filtering_threshold,
                              gradient=config.margin_gradient)


def build_head(config, num_classes: int, fp16: bool = False) -> PartialFC:
    """Partial-FC head for `config.loss`; call after torch.distributed is initialised (it shards by rank).
    `fp16` runs the head's cosine matmul under autocast; the trainer passes False, as upstream's train_v2
    builds PartialFC_V2 with fp16=False and keeps the head in fp32."""
    load_plugins(config.plugins)
    hook = LOSSES.get(config.loss)(config)
    return PartialFC(build_margin(config), config.embedding_size, num_classes, config.sample_rate,
                     fp16, negative_pairs=hook)
