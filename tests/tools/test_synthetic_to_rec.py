"""The embedded data written as an insightface folder trains through the RecordIO and .bin path."""

import pytest

from recipes.arcface_torch.cli.synthetic_to_rec import main as synthetic_to_rec
from recipes.arcface_torch.config import get_config
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.evaluation.bin_file import load_bin
from recipes.arcface_torch.train import train

pytestmark = pytest.mark.slow  # trains, exports or spawns processes

SMALL = [
    "--set",
    "synthetic.num_identities=12",
    "--set",
    "synthetic.images_per_identity=6",
    "--set",
    "synthetic.val_identities=10",
    "--set",
    "synthetic.val_pairs=40",
    "--set",
    "synthetic.label_noise=0.25",
    "--quiet",
]


def test_synthetic_rec_round_trip_and_training(tmp_path, capsys):
    data = tmp_path / "rec"
    assert synthetic_to_rec([str(data), *SMALL]) == 0
    faces = RecordIOFaces(data)
    assert len(faces) == 72 and faces.num_classes == 12
    image, label = faces[0]
    assert tuple(image.shape) == (3, 112, 112) and 0 <= int(label) < 12
    pairs = load_bin(data / "synthetic.bin")
    assert pairs.num_pairs == 40 and pairs.issame.sum() == 20

    assert synthetic_to_rec([str(data), *SMALL]) == 1  # refuses to overwrite
    assert "already exists; pass --force" in capsys.readouterr().err

    cfg = get_config(
        "recipes/arcface_torch/configs/synthetic_unpg",
        rec=str(data),
        output=str(tmp_path / "out"),
        num_workers=0,
        batch_size=8,
        max_steps=3,
        embedding_size=16,
        val_targets=["synthetic"],
    )
    result = train(cfg)
    assert result["step"] == 3
    assert result["verification"]["synthetic"]["num_pairs"] == 40


def test_identity_offset_writes_other_people(tmp_path):
    """synthetic.identity_offset: class k of the folder is identity offset + k (fine-tuning data: new people)."""
    import numpy as np

    from recipes.arcface_torch.datasets.synthetic_face_renderer import SyntheticFaceRenderer

    settings = ["--set", "synthetic.num_identities=2", "--set", "synthetic.images_per_identity=1", "--quiet"]
    settings += ["--set", "synthetic.val_identities=2", "--set", "synthetic.val_pairs=4"]
    assert synthetic_to_rec([str(tmp_path / "moved"), *settings, "--set", "synthetic.identity_offset=500"]) == 0
    faces = RecordIOFaces(tmp_path / "moved", flip=False)
    written = ((faces[0][0].permute(1, 2, 0).numpy() * 127.5) + 127.5).astype(np.float64)
    renderer = SyntheticFaceRenderer(0)
    error = {identity: np.abs(written - renderer.render(identity, 0)).mean() for identity in (0, 500)}
    assert error[500] < 10.0 < error[0]  # JPEG q95 of identity 500 (4 levels off), not identity 0 (59)
