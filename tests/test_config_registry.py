"""Config overlay and validation, the loss registry and its errors."""
import pytest

from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.losses import LOSSES, build_head, load_plugins
from recipes.arcface_torch.registry import Registry, RegistryError

DEMO = "recipes/arcface_torch/configs/synthetic_unpg"


def test_demo_config_overlays_base():
    cfg = get_config(DEMO)
    assert cfg.loss == "unpg" and cfg.network == "tiny"
    assert cfg.unpg.wisk == 1.5 and cfg.momentum == 0.9  # from base.py
    assert cfg.output == "work_dirs/synthetic_unpg"


def test_bare_config_name_is_found_in_configs_folder():
    assert get_config("synthetic_arcface").loss == "margin_softmax"


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'embeding_size'; did you mean 'embedding_size'"):
        get_config(DEMO, embeding_size=256)


def test_unknown_nested_key_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown config key 'unpg.wsik'; did you mean 'unpg.wisk'"):
        get_config(DEMO, unpg={"wsik": 1.0})


def test_missing_config_lists_available():
    with pytest.raises(ConfigError, match="not found.*synthetic_unpg"):
        get_config("no_such_config")


@pytest.mark.parametrize("key, value, message", [
    ("sample_rate", 0.0, "sample_rate=0.0 must be in"),
    ("margin_list", (1.0, 0.5), "margin_list=.* must have 3 values"),
    ("batch_size", 0, "batch_size=0 must be a positive integer"),
    ("optimizer", "adam", "optimizer='adam' is not supported"),
])
def test_bad_values_are_rejected(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_config(DEMO, **{key: value})


def test_unknown_loss_lists_available_losses():
    with pytest.raises(RegistryError, match=r"unknown loss 'unpgg'; available: .*margin_softmax.*unpg.*Did you mean 'unpg'"):
        get_config(DEMO, loss="unpgg")
    with pytest.raises(RegistryError, match=r"unknown loss 'magfac'.*Did you mean 'magface'"):
        get_config(DEMO, loss=["magfac", "unpg"])


def test_loss_options_come_from_the_plugins_and_are_checked():
    cfg = get_config(DEMO, loss=["magface", "unpg"], magface={"lambda_g": 20.0})
    assert cfg.magface.lambda_g == 20.0 and cfg.magface.u_a == 110.0 and cfg.unpg.wisk == 1.5
    assert (cfg.npcface.m0, cfg.uss.start_epoch) == (0.40, 1)
    with pytest.raises(ConfigError, match=r"config.unpg: wisk=-1.0 must be >= 0"):
        get_config(DEMO, unpg={"wisk": -1.0})
    with pytest.raises(ConfigError, match=r"unknown config key 'uss.wieght'; did you mean 'uss.weight'"):
        get_config(DEMO, uss={"wieght": 2.0})
    with pytest.raises(RegistryError, match=r"names a loss twice"):
        get_config(DEMO, loss=["unpg", "unpg"])
    head = build_head(get_config(DEMO, loss=["magface", "unpg"]), num_classes=10)
    assert [loss.name for loss in head.losses] == ["magface", "unpg"]


def test_duplicate_registration_names_the_first_registrant():
    registry = Registry("loss")
    registry.register("x", lambda cfg: None, source="first.module")
    with pytest.raises(RegistryError, match="already registered by first.module"):
        registry.register("x", lambda cfg: None, source="second.module")


def test_plugins_register_once_and_bad_plugin_is_reported():
    load_plugins(["plugins.unpg"])
    load_plugins(["plugins.unpg"])  # idempotent
    assert "unpg" in LOSSES
    with pytest.raises(RegistryError, match="plugin 'no.such.plugin' in config.plugins cannot be imported"):
        load_plugins(["no.such.plugin"])
