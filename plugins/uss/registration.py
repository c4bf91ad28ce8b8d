"""Adds "uss" to a recipe's loss registry, with its options' defaults (config.uss)."""

from __future__ import annotations

from .uss import USS


def register(registry) -> None:
    registry.register("uss", USS.from_config, source="plugins.uss (plugins/uss/uss.py)", defaults=USS.DEFAULTS)
