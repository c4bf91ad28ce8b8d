"""Config overlay and validation, the loss registry and its errors."""

import json
from pathlib import Path

import pytest

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.config import ConfigError, config_warnings, get_config
from recipes.arcface_torch.datasets.build import build_val_sets
from recipes.arcface_torch.losses import LOSSES, build_head, load_plugins
from recipes.arcface_torch.registry import Registry, RegistryError
from recipes.arcface_torch.train import main
from tests.support import DEMO, FIXTURES


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


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sample_rate", 1.5, r"sample_rate=1.5 must be a number in \[0, 1\]"),
        ("margin_list", (1.0, 0.5), "margin_list=.* must have 3 numbers"),
        ("batch_size", 0, "batch_size=0 must be a positive integer"),
        ("optimizer", "adam", "optimizer='adam' is not supported"),
    ],
)
def test_bad_values_are_rejected(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_config(DEMO, **{key: value})


def test_unknown_loss_lists_available_losses():
    with pytest.raises(
        RegistryError, match=r"unknown loss 'unpgg'; available: .*margin_softmax.*unpg.*Did you mean 'unpg'"
    ):
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


# ----------------------------------------------------------------------------- upstream arcface_torch configs
UPSTREAM = json.loads((FIXTURES / "upstream_configs.json").read_text())


def write_config_file(folder: Path, name: str, values: dict) -> Path:
    """A config file in upstream's form (`config = edict()` then one assignment per key) holding `values`."""
    lines = ["from easydict import EasyDict as edict", "", "config = edict()"]
    lines += [f"config.{key} = {tuple(value) if key == 'margin_list' else value!r}" for key, value in values.items()]
    path = folder / f"{name}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fixture_holds_upstreams_shipped_configs():
    assert len(UPSTREAM["configs"]) == 42
    networks = {values["network"] for values in UPSTREAM["configs"].values()}
    assert {"r18", "r50", "r100", "r200", "mbf"} <= networks and any(n.startswith("vit") for n in networks)


@pytest.mark.parametrize("name", sorted(UPSTREAM["configs"]))
def test_every_upstream_config_loads_unchanged(tmp_path, name):
    values = UPSTREAM["configs"][name]
    cfg = get_config(write_config_file(tmp_path, name, values))
    for key, value in values.items():
        if key == "output":
            assert cfg.output == str(Path("work_dirs") / name)  # None: work_dirs/<name>, as upstream
        else:
            assert (list(cfg[key]) if key == "margin_list" else cfg[key]) == value, key
    assert cfg.margin_gradient == "straight_through" and cfg.lr_power == 1.0  # upstream's behaviour by default


def test_upstream_base_keys_are_all_accepted(tmp_path):
    cfg = get_config(write_config_file(tmp_path, "upstream_base", UPSTREAM["base"]))
    assert cfg.wandb_project == "project" and cfg.dali is False and cfg.save_all_states is False
    assert config_warnings(cfg) == []


def test_upstream_edge_values_load_with_warnings(tmp_path):
    pfc0 = get_config(write_config_file(tmp_path, "pfc0", UPSTREAM["configs"]["wf42m_pfc0008_32gpu_r100"]))
    assert pfc0.sample_rate == 0
    assert any(
        note.startswith("sample_rate=0 keeps only the class centres of the batch's own labels")
        for note in config_warnings(pfc0)
    )
    millions = get_config(write_config_file(tmp_path, "millions", UPSTREAM["configs"]["3millions"]))
    assert any(note.startswith("warmup_epoch=-1 means no warmup") for note in config_warnings(millions))
    vit_h = get_config(write_config_file(tmp_path, "vit_h", UPSTREAM["configs"]["wf42m_pfc02_vit_h"]))
    # its rec (/train_tmp/WebFace42M) is not here: whether or not DALI is installed, the PyTorch loader reads
    assert any(
        note.startswith("dali=True: ") and "(dali_aug needs DALI too)" in note for note in config_warnings(vit_h)
    )
    assert any(
        note.startswith("dali_aug=True acts only with dali=True")
        for note in config_warnings(get_config(DEMO, dali_aug=True))
    )
    wandb = get_config(DEMO, using_wandb=True)
    assert any("Weights & Biases logging is not built in" in note for note in config_warnings(wandb))


@pytest.mark.slow
def test_vit_network_passes_validation_and_fails_in_one_line_when_built(tmp_path, capsys):
    values = dict(
        UPSTREAM["configs"]["wf42m_pfc03_40epoch_8gpu_vit_t"],
        rec="synthetic",
        num_classes=0,
        batch_size=4,
        val_targets=[],
        num_workers=0,
        output=str(tmp_path / "out"),
    )
    path = write_config_file(tmp_path, "vit_t", values)
    assert get_config(path).network == "vit_t_dp005_mask0"
    with pytest.raises(
        ValueError, match="network 'vit_t_dp005_mask0' is one of upstream arcface_torch's ViT backbones"
    ):
        get_model("vit_t_dp005_mask0")
    assert main([str(path), "--set", "synthetic={'num_identities': 4, 'images_per_identity': 2}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ViT backbones, which this recipe does not build; set config.network" in err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(sample_rate="abc"), r"^sample_rate='abc' must be a number in \[0, 1\]"),
        (dict(embedding_size=0), r"^embedding_size=0 must be a positive integer"),
        (dict(max_steps=-5), r"^max_steps=-5 must be an integer >= 0"),
        (dict(val_targets="synthetic"), r"^val_targets='synthetic' must be a list of names.*\(a list, not a string\)"),
        (dict(batch_size=-2), r"^batch_size=-2 must be a positive integer"),
        (dict(lr="0.1"), r"^lr='0.1' must be a number > 0"),
        (dict(lr=float("nan")), r"^lr=nan must be a number > 0"),
        (dict(fp16="yes"), r"^fp16='yes' must be True or False"),
        (dict(warmup_epoch=1.5), r"^warmup_epoch=1.5 must be an integer number of epochs"),
        (
            dict(margin_gradient="exactly"),
            r"^margin_gradient='exactly' must be 'straight_through' \(upstream\) or 'exact'",
        ),
        (dict(amp_dtype="half"), r"^amp_dtype='half' must be 'auto', 'float16' or 'bfloat16'"),
        (dict(dist_timeout=0), r"^dist_timeout=0 must be a number of seconds > 0"),
        (dict(num_workers=-1), r"^num_workers=-1 must be an integer >= 0"),
        (dict(margin_list=(1.0, -0.5, 0.0)), r"^margin_list=\(1.0, -0.5, 0.0\) needs m1 > 0, m2 >= 0 and m3 >= 0"),
        (dict(gradient_acc=2, max_steps=3), r"^max_steps=3 is not a multiple of gradient_acc=2; .* max_steps=2"),
        (dict(synthetic={"num_identities": 1}), r"^synthetic.num_identities=1 must be an integer >= 2"),
    ],
)
def test_every_value_is_type_and_range_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config(DEMO, **overrides)


def test_cli_bad_value_is_one_line_and_nonzero(tmp_path, capsys):
    assert main([DEMO, "--set", "sample_rate=abc", "--set", f"output={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err
    assert err == "error: sample_rate='abc' must be a number in [0, 1]; use 1.0 to keep every class centre\n"
    assert not (tmp_path / "out").exists()  # refused before any work


def test_missing_val_bin_is_a_warning_naming_the_file(tmp_path):
    notes = []
    cfg = get_config(DEMO, rec=str(tmp_path), val_targets=["lfw"])
    assert build_val_sets(cfg, warn=notes.append) == []
    assert notes == [
        f"val target 'lfw' skipped: {tmp_path / 'lfw.bin'} does not exist; put lfw.bin beside the .rec, "
        f"give the .bin's path, or remove it from config.val_targets"
    ]
