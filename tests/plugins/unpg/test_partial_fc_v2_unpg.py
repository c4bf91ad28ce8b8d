"""The upstream drop-in: PartialFC_V2's constructor and call, `weight` state_dict, UNPG inside."""

import torch

from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG, PartialFC_V2_UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss


def test_same_constructor_state_dict_and_loss_as_the_hooked_head():
    torch.manual_seed(0)
    margin = CombinedMarginLoss(64, 1.0, 0.5, 0.0)
    drop_in = PartialFC_V2_UNPG(margin, 32, 100, 1.0, False)  # upstream's positional order
    assert list(drop_in.state_dict()) == ["weight"] and drop_in.weight.shape == (100, 32)
    reference = PartialFC(margin, 32, 100, negative_pairs=UNPG(wisk=1.5))
    reference.load_state_dict(drop_in.state_dict())
    embeddings, labels = torch.randn(16, 32), torch.randint(0, 100, (16,))
    assert torch.equal(drop_in(embeddings, labels), reference(embeddings, labels))
    assert torch.equal(
        drop_in(embeddings, labels.view(-1, 1)), reference(embeddings, labels)
    )  # (b, 1) labels as upstream


def test_unpg_options_and_sampling():
    torch.manual_seed(0)
    head = PartialFC_V2_UNPG(CombinedMarginLoss(64, 1.0, 0.0, 0.4), 16, 200, sample_rate=0.1, wisk=0.5, filter=False)
    assert head.negative_pairs.wisk == 0.5 and not head.negative_pairs.filter
    labels = torch.randperm(200)[:12]  # 12 positives < 20 sampled centres
    index, remapped = head.sample(labels.clone())
    assert index.numel() == 20 and set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[remapped], labels)  # remapped labels point at the same centres
    crowded = torch.randperm(200)[:30]  # more positives than samples: every positive is kept
    assert torch.equal(head.sample(crowded.clone())[0], crowded.sort().values)
    x = torch.randn(12, 16, requires_grad=True)
    loss = head(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    touched = (head.weight.grad.abs().sum(1) > 0).sum().item()
    assert touched == 20  # only the sampled centres get gradient


def test_sample_rate_zero_keeps_only_the_positive_centres_as_upstream():
    """Upstream's wf42m_pfc0008 config sets sample_rate = 0: each step uses the batch's own class centres only."""
    torch.manual_seed(0)
    head = PartialFC_V2_UNPG(CombinedMarginLoss(64, 1.0, 0.0, 0.4), 16, 200, sample_rate=0.0)
    labels = torch.tensor([5, 17, 5, 120])
    index, remapped = head.sample(labels.clone())
    assert index.tolist() == [5, 17, 120] and torch.equal(index[remapped], labels)
    loss = head(torch.randn(4, 16), labels)
    loss.backward()
    assert torch.isfinite(loss) and (head.weight.grad.abs().sum(1) > 0).sum().item() == 3
