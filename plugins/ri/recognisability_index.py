"""The recognisability index (RI, xi) of Chai et al., "Recognizability Embedding Enhancement for Very
Low-Resolution Face Recognition and Quality Estimation" (CVPR 2023), from its three proximities:

    d_UI = 1 - cos(theta_UI)     theta_UI: angle between the unit embedding and the unrecognisable-identity
                                 centre (the mean unit embedding of unrecognisable faces)
    d_P  = 1 - cos(theta_y)      theta_y: angle to the sample's own class prototype (its class centre W_y)
    d_N  = 1 - cos(theta_n)      theta_n: angle to the nearest negative prototype, n = argmax_{j != y} cos(theta_j)
    xi   = d_UI * d_N / (d_P + d_N)

An easy face lies far from the unrecognisable cluster (d_UI large), close to its own prototype (d_P small) and
far from every other (d_N large): xi is large; a hard one the reverse. xi lies in [0, 2]; d_N / (d_P + d_N) is
1 on the own prototype, 1/2 on the decision boundary between the two prototypes and 0 on the negative one.
The three proximities are the paper's; the way they are combined into one number is this project's (see
docs/quality.md for which parts of the paper's formulation could be checked against its text).
"""

from __future__ import annotations

import torch

_EPS = 1e-12  # d_P + d_N is 0 only when the own and the nearest negative prototype coincide with the face


def ui_distance(unit_embeddings: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(B, D) unit embeddings, (D,) unit centre -> (B,) d_UI = 1 - cos(theta_UI) (also the ERS distance)."""
    return 1.0 - unit_embeddings @ centre.to(unit_embeddings.dtype)


def recognisability_index(
    unit_embeddings: torch.Tensor, centre: torch.Tensor, cos_positive: torch.Tensor, cos_negative: torch.Tensor
) -> torch.Tensor:
    """xi (B,) from unit embeddings (B, D), the centre (D,), cos(theta_y) (B,) and cos(theta_n) (B,)."""
    d_ui = ui_distance(unit_embeddings, centre)
    d_p = 1.0 - cos_positive
    d_n = 1.0 - cos_negative
    return d_ui * d_n / (d_p + d_n).clamp_min(_EPS)
