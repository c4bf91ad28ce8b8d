"""Backbones: shapes, upstream arcface_torch state-dict compatibility, round trips, errors, tracing.

The pinned figures below were worked out by hand from upstream's source
(insightface recognition/arcface_torch/backbones/iresnet.py and mobilefacenet.py), not read off our model:

IResNet, parameters() (features.weight included though frozen):
  stem 3*64*9 + 2*64 + 64; per stage (in i, width p, n blocks): first block 2i + 9ip + 2p + p + 9p^2 + 2p
  + ip (1x1 downsample) + 2p, every other block 18p^2 + 7p; bn2 2*512; fc 25088*F + F; features 2*F.
  state_dict keys: conv 1, BatchNorm 5, PReLU 1, Linear 2 -> 19 outside the stages, 18 per block,
  +6 for each stage's downsample -> 19 + 18 * blocks + 24.
MobileFaceNet (scale 2, blocks (1, 4, 6, 2)), parameters(): stem 3840, grouped conv 2688,
  DepthWise(128->128, g=128) 34944 x 5, DepthWise(128->256, g=256) 102656, DepthWise(256->256, g=256)
  135424 x 8, DepthWise(256->256, g=512) 270336, conv_sep 132608, GDC 26112 + 262144 + 1024.
  state_dict keys: ConvBlock 7, LinearBlock 6, DepthWise 20, GDC 12 -> 7+7+20+80+20+120+20+40+7+12.
"""

import io
import warnings

import pytest
import torch
from torch import nn

from recipes.arcface_torch.backbones import get_model, list_models

EXPECTED_NAMES = ["mbf", "mbf_large", "r100", "r18", "r200", "r34", "r50", "tiny"]  # tiny: CPU demo network

# name -> (sum of numel over model.parameters(), number of state_dict keys), 512-d embedding
EXPECTED_COUNTS = {
    "r18": (24_025_600, 187),
    "r34": (34_139_328, 331),
    "r50": (43_590_848, 475),
    "r100": (65_156_160, 925),
    "mbf": (2_059_520, 333),
}

_IRESNET_COMMON = {
    "conv1.weight": (64, 3, 3, 3),
    "bn1.weight": (64,),
    "bn1.bias": (64,),
    "bn1.running_mean": (64,),
    "bn1.running_var": (64,),
    "bn1.num_batches_tracked": (),
    "prelu.weight": (64,),
    "layer1.0.bn1.weight": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.0.bn2.running_var": (64,),
    "layer1.0.prelu.weight": (64,),
    "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.bn3.bias": (64,),
    "layer1.0.downsample.0.weight": (64, 64, 1, 1),
    "layer1.0.downsample.1.running_mean": (64,),
    "layer1.0.downsample.1.num_batches_tracked": (),
    "layer2.0.bn1.weight": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer3.0.conv1.weight": (256, 128, 3, 3),
    "layer3.0.downsample.0.weight": (256, 128, 1, 1),
    "layer3.0.downsample.1.weight": (256,),
    "layer4.0.conv1.weight": (512, 256, 3, 3),
    "layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "bn2.weight": (512,),
    "bn2.running_var": (512,),
    "fc.weight": (512, 25088),
    "fc.bias": (512,),
    "features.weight": (512,),
    "features.bias": (512,),
    "features.running_mean": (512,),
    "features.running_var": (512,),
    "features.num_batches_tracked": (),
}

EXPECTED_KEYS = {
    "r18": {
        **_IRESNET_COMMON,
        "layer1.1.prelu.weight": (64,),
        "layer2.1.bn3.weight": (128,),
        "layer3.1.conv1.weight": (256, 256, 3, 3),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
    },
    "r50": {
        **_IRESNET_COMMON,
        "layer1.2.conv2.weight": (64, 64, 3, 3),
        "layer2.3.prelu.weight": (128,),
        "layer3.13.conv2.weight": (256, 256, 3, 3),
        "layer4.2.bn3.running_mean": (512,),
    },
    "r100": {
        **_IRESNET_COMMON,
        "layer1.2.bn1.bias": (64,),
        "layer2.12.conv1.weight": (128, 128, 3, 3),
        "layer3.29.conv2.weight": (256, 256, 3, 3),
        "layer4.2.prelu.weight": (512,),
    },
    "mbf": {
        "layers.0.layers.0.weight": (128, 3, 3, 3),
        "layers.0.layers.1.running_var": (128,),
        "layers.0.layers.2.weight": (128,),
        "layers.1.layers.0.weight": (128, 2, 3, 3),
        "layers.1.layers.1.num_batches_tracked": (),
        "layers.2.layers.0.layers.0.weight": (128, 128, 1, 1),
        "layers.2.layers.1.layers.0.weight": (128, 1, 3, 3),
        "layers.2.layers.1.layers.2.weight": (128,),
        "layers.2.layers.2.layers.0.weight": (128, 128, 1, 1),
        "layers.2.layers.2.layers.1.bias": (128,),
        "layers.3.layers.3.layers.1.layers.0.weight": (128, 1, 3, 3),
        "layers.4.layers.0.layers.0.weight": (256, 128, 1, 1),
        "layers.4.layers.1.layers.0.weight": (256, 1, 3, 3),
        "layers.4.layers.2.layers.0.weight": (256, 256, 1, 1),
        "layers.5.layers.5.layers.2.layers.0.weight": (256, 256, 1, 1),
        "layers.6.layers.0.layers.0.weight": (512, 256, 1, 1),
        "layers.6.layers.1.layers.0.weight": (512, 1, 3, 3),
        "layers.6.layers.2.layers.0.weight": (256, 512, 1, 1),
        "layers.7.layers.1.layers.2.layers.1.running_mean": (256,),
        "conv_sep.layers.0.weight": (512, 256, 1, 1),
        "conv_sep.layers.2.weight": (512,),
        "features.layers.0.layers.0.weight": (512, 1, 7, 7),
        "features.layers.0.layers.1.weight": (512,),
        "features.layers.2.weight": (512, 512),
        "features.layers.3.weight": (512,),
        "features.layers.3.running_var": (512,),
    },
}

# keys one block or stage past upstream's layout: must not exist
UNEXPECTED_KEYS = {
    "r18": ["layer1.2.bn1.weight", "layer4.2.conv1.weight", "layer1.1.downsample.0.weight", "fc.weight_orig"],
    "r50": ["layer3.14.conv1.weight", "layer2.4.bn1.weight", "layer2.1.downsample.0.weight"],
    "r100": ["layer3.30.conv1.weight", "layer2.13.bn1.weight"],
    "mbf": ["layers.8.layers.0.weight", "layers.3.layers.4.layers.0.layers.0.weight", "features.layers.2.bias"],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, spinning thread pools make these convs ~10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _meta_model(name: str, **kwargs) -> nn.Module:
    """The model built on the meta device: real names and shapes, no memory, no compute."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


def _calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set BatchNorm running stats to the statistics of `x`, then switch to eval mode.

    Upstream's init (conv weights ~ N(0, 0.1)) overflows deep IResNets in eval mode with the default
    running stats (mean 0, var 1); trained models do not have this problem.
    """
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the stats exactly
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 112, 112, generator=generator) * 2 - 1


# the deep backbones take seconds each on 2 CPU cores: they run in the full suite, not the fast loop
NAMES_FAST_FIRST = [
    pytest.param(name, marks=pytest.mark.slow) if name in ("r100", "r200", "mbf_large") else name
    for name in EXPECTED_NAMES
]


def test_registry_lists_upstream_names():
    assert list_models() == EXPECTED_NAMES


@pytest.mark.parametrize("name", NAMES_FAST_FIRST)
@pytest.mark.parametrize("num_features", [512, 128])
def test_output_shape_every_backbone(name, num_features):
    model = _meta_model(name, num_features=num_features).eval()
    for n in (1, 3):
        out = model(torch.empty(n, 3, 112, 112, device="meta"))
        assert out.shape == (n, num_features)
        assert out.device.type == "meta"


@pytest.mark.parametrize("name", NAMES_FAST_FIRST)
def test_eval_output_deterministic_and_finite(name):
    x = _faces(3)
    torch.manual_seed(0)
    model = _calibrate(get_model(name), x[:2])
    with torch.no_grad():
        out3 = model(x)
        out1 = model(x[:1])
    assert out3.shape == (3, 512) and out1.shape == (1, 512)
    assert out3.dtype == x.dtype
    assert torch.isfinite(out3).all() and torch.isfinite(out1).all()
    assert out3.abs().max() > 0
    # eval mode: a sample's embedding does not depend on the call or on the rest of the batch, up to float32
    # GEMM order, which differs between CPUs (Intel/AMD/ARM kernels pick other blockings per batch size):
    # compare directions with cosine and the difference relative to the embedding's norm
    cosine = torch.nn.functional.cosine_similarity(out1.double(), out3[:1].double()).item()
    assert cosine > 1 - 1e-5, cosine
    relative = ((out1 - out3[:1]).norm() / out3[:1].norm()).item()
    assert relative < 5e-3, relative  # about sqrt(2 * (1 - cosine)): the same bound
    assert not torch.allclose(out3[0], out3[1])


@pytest.mark.parametrize("name", ["r18", "mbf"])
def test_embedding_size_and_dropout_reach_the_layers(name):
    dropout = 0.3 if name == "r18" else 0.0
    model = get_model(name, dropout=dropout, num_features=128)
    if name == "r18":
        assert model.fc.weight.shape == (128, 25088)
        assert model.dropout.p == 0.3
        assert not model.features.weight.requires_grad
        assert torch.equal(model.features.weight, torch.ones(128))
    else:
        assert model.features.layers[2].weight.shape == (128, 512)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_parameter_count_and_key_count_match_upstream(name):
    model = _meta_model(name)
    params, keys = EXPECTED_COUNTS[name]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys


@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_state_dict_names_and_shapes_match_upstream(name):
    state = _meta_model(name).state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    mismatched = {
        key: (shapes.get(key), shape) for key, shape in EXPECTED_KEYS[name].items() if shapes.get(key) != shape
    }
    assert mismatched == {}, f"(ours, upstream) per key: {mismatched}"
    assert [key for key in UNEXPECTED_KEYS[name] if key in shapes] == []


def test_published_sizes_sanity():
    # upstream reports ~43.6M parameters for r50 and ~65.2M for r100 at 512-d
    assert round(EXPECTED_COUNTS["r50"][0] / 1e6, 1) == 43.6
    assert round(EXPECTED_COUNTS["r100"][0] / 1e6, 1) == 65.2


@pytest.mark.parametrize("name", ["r18", "mbf"])
def test_state_dict_round_trip_strict(name):
    torch.manual_seed(1)
    source = get_model(name).eval()
    with torch.no_grad():  # make buffers differ from a fresh model's too
        for module in source.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(1.0, 2.0)
                module.num_batches_tracked.fill_(7)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(2)
    target = get_model(name)
    result = target.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    target.eval()
    x = _faces(1, seed=3)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
    if name == "r18":
        assert not target.features.weight.requires_grad


def test_fp16_flag_is_a_no_op_on_cpu():
    torch.manual_seed(0)
    plain = get_model("mbf").eval()
    amp = get_model("mbf", fp16=True).eval()
    amp.load_state_dict(plain.state_dict())
    x = _faces(2)
    with torch.no_grad():
        out = amp(x)
        assert out.dtype == torch.float32
        assert torch.equal(out, plain(x))


def test_unknown_name_lists_available_and_closest():
    message = "unknown backbone 'r500'; available: mbf, mbf_large, r100, r18, r200, r34, r50, tiny. Did you mean 'r50'?"
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("?", r"\?")):
        get_model("r500")
    with pytest.raises(ValueError, match="available: mbf"):
        get_model(None)


@pytest.mark.parametrize(
    "name, kwargs, pattern",
    [
        ("r18", {"dropout": 1.5}, "dropout must be a number in"),
        ("r18", {"num_features": 0}, "num_features must be a positive int"),
        ("r18", {"groups": 2}, "unknown option.*groups"),
        ("mbf", {"dropout": 0.2}, "has no dropout layer"),
        ("mbf", {"width": 3}, "unknown option.*width"),
        ("mbf", {"scale": 0}, "scale must be a positive int"),
    ],
)
def test_bad_arguments_are_rejected(name, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_model(name, **kwargs)


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (torch.zeros(2, 3, 96, 96), r"\(N, 3, 112, 112\), got \(2, 3, 96, 96\)"),
        (torch.zeros(3, 112, 112), r"got \(3, 112, 112\)"),
        (torch.zeros(2, 3, 112, 112, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_inputs_are_rejected(bad, pattern):
    model = get_model("mbf").eval()
    with pytest.raises(ValueError, match=pattern):
        model(bad)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
@pytest.mark.parametrize("name", ["r18", "mbf"])
def test_trace_at_batch_2_runs_at_batch_5(name):
    torch.manual_seed(0)
    model = _calibrate(get_model(name), _faces(2, seed=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _faces(2), check_trace=False)
    x = _faces(5, seed=5)
    with torch.no_grad():
        out = traced(x)
        assert out.shape == (5, 512)
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
