"""Load an easydict config file overlaid on configs/base.py, rejecting unknown keys.

cfg = get_config("recipes/arcface_torch/configs/ms1mv3_r50_unpg")   # ".py" optional
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import math
import numbers
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
    candidates = [
        Path(name),
        Path(f"{name}.py"),
        CONFIG_DIR / f"{Path(name).name}",
        CONFIG_DIR / f"{Path(name).stem}.py",
    ]
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
    """Base config overlaid with the file `name` and then with keyword `overrides`; unknown keys and bad
    values raise ConfigError before any work starts."""
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
    if cfg.output is None or cfg.output == "":
        cfg.output = str(Path("work_dirs") / path.stem)
    validate_config(cfg)
    return cfg


def _add_loss_defaults(cfg: dict, plugins) -> None:
    """Each registered loss's options as the section config.<loss name>, with the defaults its plugin declares."""
    from .losses import LOSSES, load_plugins

    load_plugins(plugins)
    for loss_name, options in LOSSES.defaults().items():
        if loss_name in cfg:
            raise ConfigError(
                f"loss {loss_name!r} has options but config.{loss_name} is already a recipe key; "
                f"register the loss under another name"
            )
        cfg[loss_name] = edict(copy.deepcopy(options))


def _validate_losses(cfg: edict) -> None:
    """config.loss names registered losses, and each builds from its config.<name> section (and, with
    head_chunk, can run on the chunked head)."""
    from plugins.partial_fc.protocol import chunked_refusal

    from .losses import LOSSES, loss_names

    for loss_name in loss_names(cfg):
        builder = LOSSES.get(loss_name)
        try:
            loss = builder(cfg)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"config.{loss_name}: {error}") from error
        reason = chunked_refusal(loss) if cfg.head_chunk and loss is not None else None
        if reason:
            raise ConfigError(f"head_chunk={cfg.head_chunk!r}: {reason}")
    if cfg.head_chunk and cfg.interclass_filtering_threshold > 0:
        raise ConfigError(
            f"head_chunk={cfg.head_chunk!r} does not run interclass_filtering_threshold="
            f"{cfg.interclass_filtering_threshold} (it rewrites non-target logits); set one of them to 0"
        )


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(minimum: int | None = None):
    def check(value) -> bool:
        return _is_int(value) and (minimum is None or value >= minimum)

    return check


def _number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    def check(value) -> bool:
        if not _is_number(value):
            return False
        if low is not None and (value < low or (low_open and value == low)):
            return False
        return high is None or not (value > high or (high_open and value == high))

    return check


def _boolean(value) -> bool:
    return isinstance(value, bool) or (_is_int(value) and value in (0, 1))


def _one_of(*choices):
    return lambda value: isinstance(value, str) and value in choices


def _string(value) -> bool:
    return isinstance(value, str) and value != ""


def _optional_string(value) -> bool:
    return value is None or isinstance(value, str)


def _string_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _loss_names(value) -> bool:
    return _string(value) or (isinstance(value, (list, tuple)) and len(value) > 0 and all(_string(v) for v in value))


def _head_chunk(value) -> bool:
    return value == "auto" or (_is_int(value) and value >= 0)


def _margins(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(m) for m in value)


# key -> (check, what the value must be and how to fix it); every key the recipe reads is here
_RULES = {
    "network": (_string, "must be a backbone name such as 'r50', 'r100' or 'mbf'"),
    "embedding_size": (_integer(1), "must be a positive integer; upstream uses 512"),
    "dropout": (_number(0.0, 1.0, high_open=True), "must be a number in [0, 1); use 0.0 for none"),
    "fp16": (_boolean, "must be True or False"),
    "amp_dtype": (_one_of("auto", "float16", "bfloat16"), "must be 'auto', 'float16' or 'bfloat16'"),
    "margin_list": (
        _margins,
        "must have 3 numbers (m1, m2, m3), e.g. (1.0, 0.5, 0.0) for ArcFace or (1.0, 0.0, 0.4) for CosFace",
    ),
    "scale": (_number(0.0, low_open=True), "must be a number > 0; upstream uses 64"),
    "sample_rate": (_number(0.0, 1.0), "must be a number in [0, 1]; use 1.0 to keep every class centre"),
    "interclass_filtering_threshold": (
        _number(0.0, 1.0, high_open=True),
        "must be a number in [0, 1); 0 turns the filter off",
    ),
    "margin_gradient": (_one_of("straight_through", "exact"), "must be 'straight_through' (upstream) or 'exact'"),
    "head_chunk": (
        _head_chunk,
        "must be 0 (the whole logit matrix, upstream's head), a number of classes per chunk > 0, or 'auto'",
    ),
    "head_chunk_budget": (_number(0.0), "must be a number of GiB >= 0 (0 recomputes every chunk in backward)"),
    "loss": (_loss_names, "must name a registered loss or list them, e.g. 'unpg' or ['magface', 'unpg']"),
    "plugins": (_string_list, "must be a list of module names, e.g. ['plugins.unpg']"),
    "optimizer": (_one_of("sgd", "adamw"), "is not supported; use 'sgd' or 'adamw'"),
    "lr": (_number(0.0, low_open=True), "must be a number > 0, e.g. 0.1 for sgd or 0.001 for adamw"),
    "momentum": (_number(0.0, 1.0, high_open=True), "must be a number in [0, 1); upstream uses 0.9"),
    "weight_decay": (_number(0.0), "must be a number >= 0; upstream uses 5e-4"),
    "batch_size": (_integer(1), "must be a positive integer (images per rank per step)"),
    "gradient_acc": (_integer(1), "must be a positive integer; 1 steps the optimizer every batch"),
    "clip_grad_norm": (_number(0.0), "must be a number >= 0; 0 turns clipping off, upstream uses 5"),
    "num_epoch": (_integer(1), "must be a positive integer"),
    "warmup_epoch": (_integer(), "must be an integer number of epochs; 0 or less means no warmup"),
    "lr_power": (_number(0.0, low_open=True), "must be a number > 0; upstream uses 1.0 (linear decay)"),
    "max_steps": (_integer(0), "must be an integer >= 0; 0 trains for num_epoch epochs"),
    "init_backbone": (
        _optional_string,
        "must be the path of a backbone (a model.pt, a checkpoint or a run folder), or '' to start from random weights",
    ),
    "init_head": (_one_of("random", "imprint"), "must be 'random' (upstream) or 'imprint'"),
    "backbone_lr_scale": (_number(0.0), "must be a number >= 0, e.g. 0.1 to train the backbone at a tenth of lr"),
    "freeze_backbone_epochs": (_integer(0), "must be an integer >= 0; 0 trains the backbone from the first epoch"),
    "bn_mode": (_one_of("train", "frozen"), "must be 'train' (upstream) or 'frozen'"),
    "rec": (_string, "must be 'synthetic' or the path of a RecordIO or image folder"),
    "num_classes": (_integer(0), "must be an integer >= 0; 0 reads it from the dataset"),
    "num_image": (_integer(0), "must be an integer >= 0; 0 reads it from the dataset"),
    "num_workers": (_integer(0), "must be an integer >= 0; 0 loads data in the training process"),
    "seed": (_integer(), "must be an integer"),
    "val_targets": (
        _string_list,
        "must be a list of names, e.g. ['lfw', 'cfp_fp'] or ['synthetic'] (a list, not a string)",
    ),
    "output": (_string, "must be a folder path"),
    "verbose": (_integer(1), "must be a positive integer (verification every `verbose` steps)"),
    "frequent": (_integer(1), "must be a positive integer (a progress line every `frequent` steps)"),
    "resume": (
        lambda value: _boolean(value) or value == "auto",
        "must be True, False or 'auto' (resume when config.output holds a checkpoint, else start)",
    ),
    "save_all_states": (_boolean, "must be True or False"),
    "checkpoint_every": (_integer(0), "must be an integer number of steps >= 0; 0 saves at epoch ends only"),
    "keep_checkpoints": (_integer(1), "must be an integer >= 1 (checkpoint sets kept in config.output)"),
    "nan_policy": (_one_of("stop"), "is not supported; use 'stop'"),
    "dist_timeout": (_number(0.0, low_open=True), "must be a number of seconds > 0, e.g. 300"),
    "dali": (_boolean, "must be True or False"),
    "dali_aug": (_boolean, "must be True or False"),
    "using_wandb": (_boolean, "must be True or False"),
    "save_artifacts": (_boolean, "must be True or False"),
}
_SYNTHETIC_RULES = {
    "num_identities": (_integer(2), "must be an integer >= 2"),
    "images_per_identity": (_integer(1), "must be a positive integer"),
    "val_identities": (_integer(2), "must be an integer >= 2"),
    "val_pairs": (_integer(2), "must be an integer >= 2"),
    "label_noise": (_number(0.0, 1.0, high_open=True), "must be a number in [0, 1)"),
    "seed": (_integer(), "must be an integer"),
    "preset": (_one_of("classic", "hard"), "must be 'classic' or 'hard'"),
    "max_yaw": (_number(0.0, 80.0), "must be a number of degrees in [0, 80], e.g. 40"),
    "identity_offset": (_integer(0), "must be an integer >= 0; 0 renders identities 0..num_identities-1"),
}


def validate_config(cfg: edict) -> None:
    """Type and range of every value the recipe reads, before any work; each error names the key, the
    value and the fix. Loss-specific keys (config.<loss>.*) are checked by their loss."""
    for rules, node, prefix in ((_RULES, cfg, ""), (_SYNTHETIC_RULES, cfg.synthetic, "synthetic.")):
        for key, (check, fix) in rules.items():
            if not check(node[key]):
                raise ConfigError(f"{prefix}{key}={node[key]!r} {fix}")
    if cfg.max_steps % cfg.gradient_acc:
        raise ConfigError(
            f"max_steps={cfg.max_steps} is not a multiple of gradient_acc={cfg.gradient_acc}; "
            f"stop on an optimizer step, e.g. max_steps={cfg.max_steps // cfg.gradient_acc * cfg.gradient_acc or cfg.gradient_acc}"
        )
    if cfg.checkpoint_every % cfg.gradient_acc:
        raise ConfigError(
            f"checkpoint_every={cfg.checkpoint_every} is not a multiple of gradient_acc={cfg.gradient_acc}; "
            f"save on an optimizer step, e.g. checkpoint_every={cfg.checkpoint_every // cfg.gradient_acc * cfg.gradient_acc or cfg.gradient_acc}"
        )
    for key, asks in (("checkpoint_every", cfg.checkpoint_every > 0), ("resume", cfg.resume == "auto")):
        if asks and not cfg.save_all_states:
            raise ConfigError(
                f"{key}={cfg[key]!r} needs the exact resume state that save_all_states writes; set save_all_states=True"
            )
    m1, m2, m3 = cfg.margin_list
    if m1 <= 0 or m2 < 0 or m3 < 0:
        raise ConfigError(
            f"margin_list={tuple(cfg.margin_list)!r} needs m1 > 0, m2 >= 0 and m3 >= 0, "
            f"e.g. (1.0, 0.5, 0.0) for ArcFace or (1.0, 0.0, 0.4) for CosFace"
        )
    if cfg.init_head == "imprint" and not cfg.init_backbone:
        raise ConfigError(
            "init_head='imprint' needs a trained backbone to embed the faces with; set init_backbone to a model.pt "
            "or run folder, or use init_head='random'"
        )
    _validate_losses(cfg)


def config_warnings(cfg: edict) -> list[str]:
    """One line per accepted value that asks for something this recipe does not do or that looks like a typo."""
    notes = []
    if cfg.sample_rate == 0:
        notes.append(
            "sample_rate=0 keeps only the class centres of the batch's own labels (as upstream); "
            "set e.g. 0.1 or 1.0 if negatives from other classes were meant"
        )
    if cfg.warmup_epoch < 0:
        notes.append(f"warmup_epoch={cfg.warmup_epoch} means no warmup (as upstream treats it); use 0 to say so")
    if cfg.dali:
        installed = (
            importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
        )
        recordio = cfg.rec != "synthetic" and (Path(cfg.rec) / "train.rec").is_file()
        if not (installed and recordio):
            why = "NVIDIA DALI is not installed" if not installed else f"DALI reads RecordIO and {cfg.rec!r} is none"
            notes.append(
                f"dali=True: {why}; the PyTorch DataLoader with random horizontal flip loads the data"
                + (" (dali_aug needs DALI too)" if cfg.dali_aug else "")
            )
    elif cfg.dali_aug:
        notes.append("dali_aug=True acts only with dali=True (as upstream); set dali=True or drop dali_aug")
    if cfg.freeze_backbone_epochs >= cfg.num_epoch:
        notes.append(
            f"freeze_backbone_epochs={cfg.freeze_backbone_epochs} >= num_epoch={cfg.num_epoch}: the backbone never "
            f"trains, only the head does; lower freeze_backbone_epochs if the backbone should be fine-tuned too"
        )
    if (cfg.backbone_lr_scale != 1.0 or cfg.freeze_backbone_epochs or cfg.bn_mode != "train") and not cfg.init_backbone:
        notes.append(
            "backbone_lr_scale / freeze_backbone_epochs / bn_mode apply to a backbone from random weights here; "
            "set init_backbone to fine-tune a trained one"
        )
    if cfg.using_wandb or cfg.save_artifacts:
        notes.append(
            "using_wandb / save_artifacts: Weights & Biases logging is not built in; progress goes to "
            "training.log and TensorBoard in config.output"
        )
    return notes


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not KEY=VALUE; write e.g. --set loss=unpg or --set unpg.wisk=1.0")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as unpg or r50
    return key.strip(), value


def nest(pairs) -> dict:
    """[("unpg.wisk", 1.0)] -> {"unpg": {"wisk": 1.0}}"""
    tree: dict = {}
    for key, value in pairs:
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree
