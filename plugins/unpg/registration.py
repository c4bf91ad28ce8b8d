"""Entry point a training recipe calls to add this plugin's loss to its registry.

The recipe owns the registry (an object with `register(name, builder, source=..., defaults=...)`); a builder
takes the recipe config and returns a partial-FC loss; `defaults` are the knobs under `config.unpg`.
"""

from __future__ import annotations

from .unpg import UNPG


def register(registry) -> None:
    registry.register("unpg", UNPG.from_config, source="plugins.unpg (plugins/unpg/unpg.py)", defaults=UNPG.DEFAULTS)
