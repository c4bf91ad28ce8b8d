"""The small synthetic training runs the recipe's tests share: one config, and one worker for 2-rank runs."""

from __future__ import annotations

from tests.support import DEMO


def small_config(output, **overrides):
    """20 identities x 8 images, batch 16 -> 10 batches per epoch; tiny backbone, no verification."""
    from recipes.arcface_torch.config import get_config

    settings = dict(
        output=str(output),
        num_workers=0,
        batch_size=16,
        num_epoch=3,
        frequent=2,
        verbose=1000,
        val_targets=[],
        embedding_size=32,
        sample_rate=0.5,
        lr=0.05,
        synthetic={"num_identities": 20, "images_per_identity": 8},
    )
    settings.update(overrides)
    return get_config(DEMO, **settings)


def train_on_rank(rank, world_size, output, overrides):
    """A run_on_ranks worker: 8 identities x 4 images, batch 4 per rank, 2 epochs; the final step, or the
    (type name, message) of the TrainingError / RankError the rank stopped with."""
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.distributed import RankError
    from recipes.arcface_torch.train import TrainingError, train

    config = get_config(
        DEMO,
        output=output,
        num_workers=0,
        batch_size=4,
        num_epoch=2,
        val_targets=[],
        embedding_size=16,
        synthetic={"num_identities": 8, "images_per_identity": 4},
        **overrides,
    )
    try:
        return train(config)["step"]
    except (TrainingError, RankError) as error:
        return type(error).__name__, str(error)
