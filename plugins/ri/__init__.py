"""Recognisability (RI, the unrecognisable-identity centre, index diversion; Chai et al., CVPR 2023) as a loss
of the partial-FC head. Torch only."""

from .nearest_negative import nearest_negative_cosine
from .recognisability_index import recognisability_index, ui_distance
from .registration import register
from .ri import RI
from .unrecognisable_centre import unrecognisable_centre

__all__ = ["RI", "recognisability_index", "ui_distance", "nearest_negative_cosine", "unrecognisable_centre", "register"]
