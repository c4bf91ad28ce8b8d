"""Adds "ri" to a recipe's loss registry, with its options' defaults (config.ri)."""

from __future__ import annotations

from .ri import RI


def register(registry) -> None:
    registry.register("ri", RI.from_config, source="plugins.ri (plugins/ri/ri.py)", defaults=RI.DEFAULTS)
