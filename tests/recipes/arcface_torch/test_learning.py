"""A short real training run on the embedded synthetic identities with loss = "unpg" learns:
verification accuracy on held-out identities ends well above chance (0.5) and the loss goes down."""

import pytest

from recipes.arcface_torch.config import get_config
from recipes.arcface_torch.train import train

pytestmark = pytest.mark.slow  # trains, exports or spawns processes


def test_unpg_training_on_embedded_data_learns(tmp_path):
    cfg = get_config(
        "recipes/arcface_torch/configs/synthetic_unpg",
        output=str(tmp_path),
        num_workers=0,
        batch_size=64,
        num_epoch=1,
        embedding_size=64,
        frequent=10,
        verbose=10_000,
        synthetic={"num_identities": 120, "images_per_identity": 24, "val_identities": 100, "val_pairs": 400},
    )
    result = train(cfg)
    accuracy = result["verification"]["synthetic"]["accuracy"]
    assert accuracy > 0.65, f"verification accuracy {accuracy:.3f} after {result['step']} steps"
    losses = [value for _, value in result["loss_history"]]
    assert sum(losses[-10:]) < sum(losses[:10]), "the training loss did not go down"
