"""config.init_backbone: every file a backbone comes in loads strictly; every way it can fail is one pinned line."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recipes.arcface_torch.backbone_init import load_init_backbone
from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.checkpoint import CheckpointError
from recipes.arcface_torch.train import main
from tests.support import DEMO


def upstream_iresnet_state(layers, num_features: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with insightface arcface_torch's iresnet names and shapes, written out from the layout of its
    source (backbones/iresnet.py: conv1 bn1 prelu, IBasicBlock bn1 conv1 bn2 prelu conv2 bn3 and a 1x1 conv + BN
    downsample in each stage's first block, bn2, fc, features), not from our model. Random values."""
    shapes: dict[str, tuple] = {}

    def batchnorm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 3, 3)
    batchnorm("bn1", 64)
    shapes["prelu.weight"] = (64,)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for block in range(blocks):
            prefix, cin = f"layer{stage}.{block}", inplanes if block == 0 else planes
            batchnorm(f"{prefix}.bn1", cin)
            shapes[f"{prefix}.conv1.weight"] = (planes, cin, 3, 3)
            batchnorm(f"{prefix}.bn2", planes)
            shapes[f"{prefix}.prelu.weight"] = (planes,)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            batchnorm(f"{prefix}.bn3", planes)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes, cin, 1, 1)
                batchnorm(f"{prefix}.downsample.1", planes)
        inplanes = planes
    batchnorm("bn2", 512)
    shapes["fc.weight"], shapes["fc.bias"] = (num_features, 512 * 7 * 7), (num_features,)
    batchnorm("features", num_features)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def config_for(path, network: str, embedding_size: int) -> SimpleNamespace:
    return SimpleNamespace(init_backbone=str(path), network=network, embedding_size=embedding_size)


def load(path, network: str = "tiny", embedding_size: int = 32) -> torch.nn.Module:
    backbone = get_model(network, num_features=embedding_size)
    load_init_backbone(config_for(path, network, embedding_size), backbone)
    return backbone


def tiny_state(embedding_size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return get_model("tiny", num_features=embedding_size).state_dict()


def assert_holds(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = backbone.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("wrapping", ["model.pt", "checkpoint_gpu_0.pt", "ddp model.pt"])
def test_an_upstream_iresnet_file_loads_strictly(tmp_path, wrapping):
    """insightface's released model.pt (a plain state_dict), upstream train_v2's checkpoint_gpu_<r>.pt (the
    backbone under state_dict_backbone) and a state_dict saved from a DDP wrapper ("module." prefixes)."""
    state = upstream_iresnet_state((2, 2, 2, 2), 128)
    if wrapping == "checkpoint_gpu_0.pt":
        saved = {"epoch": 3, "global_step": 900, "state_dict_backbone": state, "state_dict_softmax_fc": {}}
    elif wrapping == "ddp model.pt":
        saved = {f"module.{key}": value for key, value in state.items()}
    else:
        saved = state
    path = tmp_path / wrapping.split()[-1]
    torch.save(saved, path)
    assert_holds(load(path, "r18", 128), state)


def test_our_run_folder_its_model_pt_or_its_checkpoint(tmp_path):
    state = tiny_state()
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict_backbone": state, "global_step": 7}, run / "checkpoint_rank0.pt")
    assert_holds(load(run), state)  # no model.pt yet: rank 0's checkpoint
    newer = tiny_state(seed=1)
    torch.save(newer, run / "model.pt")
    assert_holds(load(run), newer)  # model.pt first


def test_another_network_names_it(tmp_path):
    # r34 (3, 4, 6, 3) has 1 + 2 + 4 + 1 blocks more than r18 (2, 2, 2, 2), 18 keys each: 144 missing keys
    torch.save(upstream_iresnet_state((2, 2, 2, 2), 128), tmp_path / "r18.pt")
    with pytest.raises(
        CheckpointError,
        match=r"r18.pt does not fit network 'r34' with embedding_size 128 \(144 missing keys: layer1\.2\.bn1\.bias, "
        r".*\); the file holds a 'r18' backbone with embedding_size 128: set config.network = 'r18'$",
    ):
        load(tmp_path / "r18.pt", "r34", 128)


def test_another_embedding_size_names_it(tmp_path):
    torch.save(tiny_state(64), tmp_path / "tiny64.pt")
    with pytest.raises(
        CheckpointError,
        match=r"does not fit network 'tiny' with embedding_size 32 \(6 keys of another shape: fc\.bias \(64,\) in the "
        r"file vs \(32,\), fc\.weight \(64, 6272\) in the file vs \(32, 6272\), .*\); the file holds a 'tiny' "
        r"backbone with embedding_size 64: set config.embedding_size = 64$",
    ):
        load(tmp_path / "tiny64.pt")


def test_both_wrong_names_both_keys(tmp_path):
    torch.save(tiny_state(64), tmp_path / "tiny64.pt")
    with pytest.raises(
        CheckpointError,
        match=r"\(\d+ missing keys: .*; \d+ unexpected keys: body\.0\.weight, .*\); the file holds a 'tiny' backbone "
        r"with embedding_size 64: set config.network = 'tiny' and config.embedding_size = 64$",
    ):
        load(tmp_path / "tiny64.pt", "mbf", 128)


def test_an_unknown_architecture_says_so(tmp_path):
    torch.save({"stem.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(32, 8)}, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError,
        match=r"\(\d+ missing keys: body\.0\.weight, .*; 2 unexpected keys: head\.weight, stem\.weight\); it is none "
        r"of this recipe's backbones \(mbf, .*tiny\) at any embedding size in it; set config.network",
    ):
        load(tmp_path / "other.pt")


def test_renamed_keys_fall_back_to_the_runs_config_json(tmp_path):
    run = tmp_path / "renamed"
    run.mkdir()
    torch.save({f"backbone.{k}": v for k, v in tiny_state(48).items()}, run / "model.pt")
    (run / "config.json").write_text('{"network": "tiny", "embedding_size": 48}')
    with pytest.raises(
        CheckpointError,
        match=r"its run's config.json says network 'tiny' with embedding_size 48: set config.network = 'tiny' and "
        r"config.embedding_size = 48$",
    ):
        load(run, "r18", 512)


def test_non_finite_weights_are_refused(tmp_path):
    state = tiny_state()
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan.pt holds NaN/Inf in 1 tensor\(s\) \(fc\.weight\); start from"):
        load(tmp_path / "nan.pt")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"fc.weight": _RunsCodeWhenUnpickled(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"^init_backbone='.*evil.pt': cannot load .* as a weights-only torch"):
        load(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda d: d / "absent.pt", r"^init_backbone='.*absent.pt': checkpoint .*absent.pt does not exist; pass a"),
        (
            lambda d: d,
            r"folder .* has no model.pt \(nor checkpoint_step\*_rank0.pt or checkpoint_rank0.pt or checkpoint_gpu_0.pt\)",
        ),
        (lambda d: (d / "list.pt", torch.save([1, 2], d / "list.pt"))[0], r"holds a list that is not a state_dict"),
        (lambda d: (d / "torn.pt", (d / "torn.pt").write_bytes(b"PK\x03\x04 torn"))[0], r"cannot load .*torn.pt as"),
    ],
    ids=["missing file", "empty folder", "not a state_dict", "torn file"],
)
def test_unusable_sources_are_one_line(tmp_path, make, pattern):
    with pytest.raises(CheckpointError, match=pattern) as caught:
        load(make(tmp_path))
    assert "\n" not in str(caught.value)


def test_the_trainer_reports_a_bad_init_backbone_in_one_line_and_exits_1(tmp_path, capsys):
    torch.save(tiny_state(64), tmp_path / "tiny64.pt")
    settings = ["num_workers=0", "val_targets=[]", "synthetic={'num_identities': 6, 'images_per_identity': 4}"]
    settings += [f"output={tmp_path / 'out'}", f"init_backbone={tmp_path / 'tiny64.pt'}", "batch_size=8"]
    code = main([DEMO, *[item for setting in settings for item in ("--set", setting)]])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: init_backbone=") and "set config.embedding_size = 64" in err
    assert not (tmp_path / "out" / "model.pt").exists()
