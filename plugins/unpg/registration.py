"""Entry point a training recipe calls to add this plugin's losses to its registry.

The recipe owns the registry (an object with `register(name, builder, source=...)`); a builder takes the
recipe config and returns the negative-pair hook for its partial-FC head.
"""
from __future__ import annotations

from .unpg import UNPG


def register(registry) -> None:
    registry.register("unpg", UNPG.from_config, source="plugins.unpg (plugins/unpg/unpg.py)")
