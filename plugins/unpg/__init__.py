"""UNPG (Unified Negative Pair Generation) for arcface_torch's partial-FC head. Depends on torch only."""
from .dist_ops import all_gather_with_grad, dist_softmax_cross_entropy, rank_and_world_size
from .mini_batch_pairs import cosine_similarity_matrix, negative_pair_mask
from .partial_fc import PartialFC
from .partial_fc_v2_unpg import PartialFC_V2_UNPG
from .registration import register
from .unpg import UNPG, NegativePairTerm
from .whisker_filter import WhiskerBounds, whisker_bounds

__all__ = [
    "UNPG", "NegativePairTerm", "PartialFC", "PartialFC_V2_UNPG", "WhiskerBounds", "whisker_bounds",
    "cosine_similarity_matrix", "negative_pair_mask", "all_gather_with_grad", "dist_softmax_cross_entropy",
    "rank_and_world_size", "register",
]
