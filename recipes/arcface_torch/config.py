"""Load an easydict config file overlaid on configs/base.py, rejecting unknown keys.

    cfg = get_config("recipes/arcface_torch/configs/ms1mv3_r50_unpg")   # ".py" optional
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
from pathlib import Path

from easydict import EasyDict as edict

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config file is missing or names a key or value the recipe does not know."""


def _load_module_config(path: Path) -> edict:
    spec = importlib.util.spec_from_file_location(f"_arcface_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "config"):
        raise ConfigError(f"config file {path} defines no `config`; start it with `config = edict()`")
    return module.config


def resolve_config_path(name: str | Path) -> Path:
    """Accept `configs/x`, `configs/x.py`, or a bare name `x` looked up in the recipe's configs/."""
    candidates = [Path(name), Path(f"{name}.py"), CONFIG_DIR / f"{Path(name).name}", CONFIG_DIR / f"{Path(name).stem}.py"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    available = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("base", "__init__"))
    raise ConfigError(f"config {str(name)!r} not found; pass a config file path or one of: {', '.join(available)}")


def _check_keys(overrides: dict, defaults: dict, prefix: str = "") -> None:
    for key, value in overrides.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid keys: {', '.join(sorted(defaults))}"
            raise ConfigError(f"unknown config key '{prefix}{key}'; {hint}")
        if isinstance(defaults[key], dict) and isinstance(value, dict):
            _check_keys(value, defaults[key], prefix=f"{prefix}{key}.")


def _merge(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge(base[key], value)
        else:
            base[key] = value


def get_config(name: str | Path, **overrides) -> edict:
    """Base config overlaid with the file `name` and then with keyword `overrides`; unknown keys raise."""
    path = resolve_config_path(name)
    cfg = copy.deepcopy(_load_module_config(CONFIG_DIR / "base.py"))
    file_cfg = _load_module_config(path)
    _add_loss_defaults(cfg, overrides.get("plugins", file_cfg.get("plugins", cfg.plugins)))
    _check_keys(file_cfg, cfg)
    _merge(cfg, file_cfg)
    _check_keys(overrides, cfg)
    _merge(cfg, overrides)
    cfg = edict(cfg)
    cfg.config_name = path.stem
    if not cfg.output:
        cfg.output = str(Path("work_dirs") / path.stem)
    validate_config(cfg)
    return cfg


def _add_loss_defaults(cfg: dict, plugins) -> None:
    """Each registered loss's options as the section config.<loss name>, with the defaults its plugin declares."""
    from .losses import LOSSES, load_plugins

    load_plugins(plugins)
    for loss_name, options in LOSSES.defaults().items():
        if loss_name in cfg:
            raise ConfigError(f"loss {loss_name!r} has options but config.{loss_name} is already a recipe key; "
                              f"register the loss under another name")
        cfg[loss_name] = edict(copy.deepcopy(options))


def _validate_losses(cfg: edict) -> None:
    """config.loss names registered losses, and each builds from its config.<name> section."""
    from .losses import LOSSES, loss_names

    for loss_name in loss_names(cfg):
        builder = LOSSES.get(loss_name)
        try:
            builder(cfg)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"config.{loss_name}: {error}") from error


def validate_config(cfg: edict) -> None:
    """Value checks that do not need the dataset; each names the key, the value and the fix."""
    if len(cfg.margin_list) != 3:
        raise ConfigError(f"margin_list={cfg.margin_list!r} must have 3 values (m1, m2, m3), e.g. (1.0, 0.5, 0.0) for ArcFace")
    if not 0.0 < cfg.sample_rate <= 1.0:
        raise ConfigError(f"sample_rate={cfg.sample_rate} must be in (0, 1]; use 1.0 to keep every class centre")
    for key in ("batch_size", "gradient_acc", "frequent", "verbose"):
        if int(cfg[key]) < 1 or int(cfg[key]) != cfg[key]:
            raise ConfigError(f"{key}={cfg[key]!r} must be a positive integer")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer={cfg.optimizer!r} is not supported; use 'sgd' or 'adamw'")
    if cfg.nan_policy not in ("stop",):
        raise ConfigError(f"nan_policy={cfg.nan_policy!r} is not supported; use 'stop'")
    _validate_losses(cfg)
