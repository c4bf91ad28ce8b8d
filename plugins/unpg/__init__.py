"""UNPG (Unified Negative Pair Generation) as a loss of the partial-FC head (plugins.partial_fc). Torch only."""

from .mini_batch_pairs import cosine_similarity_matrix, negative_pair_mask
from .partial_fc_v2_unpg import PartialFC_V2_UNPG
from .registration import register
from .unpg import UNPG, NegativePairTerm
from .whisker_filter import WhiskerBounds, whisker_bounds

__all__ = [
    "UNPG",
    "NegativePairTerm",
    "PartialFC_V2_UNPG",
    "WhiskerBounds",
    "whisker_bounds",
    "cosine_similarity_matrix",
    "negative_pair_mask",
    "register",
]
