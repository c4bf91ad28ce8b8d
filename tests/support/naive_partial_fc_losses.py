"""Independent, deliberately slow float64 references for the partial-FC losses (full FC, one process).

Every row's logits are built one scalar at a time from the papers' formulas (target first, then each other
class, then UNPG's kept pairs as their own columns) and passed to F.cross_entropy; auxiliary losses are
plain Python sums. Nothing here imports the code under test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.support.naive_reference import naive_kept_negatives


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(unit(a), unit(b))


def arc_target(cos_y: torch.Tensor, margin) -> torch.Tensor:
    """cos(arccos(c) + m) where c > 0, else c (the easy-margin rule of MagFace and NPCFace)."""
    if float(cos_y.detach()) > 0:
        return torch.cos(torch.arccos(cos_y) + margin)
    return cos_y


def magface_magnitude(x: torch.Tensor, opts: dict) -> torch.Tensor:
    return torch.clamp(x.norm(), opts["l_a"], opts["u_a"])


def magface_margin(a: torch.Tensor, opts: dict) -> torch.Tensor:
    return (opts["u_m"] - opts["l_m"]) / (opts["u_a"] - opts["l_a"]) * (a - opts["l_a"]) + opts["l_m"]


def naive_loss(
    embeddings,
    labels,
    weight,
    s,
    margins=(1.0, 0.5, 0.0),
    *,
    classes=None,
    magface=None,
    npcface=None,
    unpg_wisk="off",
    uss=None,
    ri=None,
):
    """embeddings (B, D) float64 (grad), labels (B,), weight (C, D) float64 (grad) -> 0-d loss.

    classes: the class ids taking part (sampled centres; default all). magface / npcface: option dicts.
    unpg_wisk: "off" (no UNPG), None (UNPG without filter) or the whisker width. uss: dict with options
    "weight", "m", the bank {class: unit vector} and the bias tensor "b". ri: dict for naive_ri.
    """
    classes = list(range(weight.shape[0])) if classes is None else [int(c) for c in classes]
    pairs = [] if unpg_wisk == "off" else naive_kept_negatives(embeddings, labels, unpg_wisk)
    rows = []
    for i in range(embeddings.shape[0]):
        x, y = embeddings[i], int(labels[i])
        cos = {j: cosine(x, weight[j]) for j in classes}
        cos_y = cos[y]
        others = {j: cos[j] for j in classes if j != y}
        if npcface is not None:
            with torch.no_grad():
                threshold = math.cos(math.acos(float(cos_y.detach())) + npcface["m"])
            hard = [j for j in others if float(others[j].detach()) > threshold]
            mean_hard = sum(float(others[j].detach()) for j in hard) / len(hard) if hard else 0.0
            margin = npcface["m0"] + npcface["m1"] * mean_hard
            target = arc_target(cos_y, margin)
            others = {j: (npcface["t"] * c + npcface["a"] if j in hard else c) for j, c in others.items()}
        elif magface is not None:
            target = arc_target(cos_y, magface_margin(magface_magnitude(x, magface), magface))
        else:
            m1, m2, m3 = margins
            target = torch.cos(m1 * torch.arccos(cos_y) + m2) - m3
        columns = [s * target] + [s * c for c in others.values()] + [s * n for n in pairs]
        rows.append(torch.stack(columns))
    loss = F.cross_entropy(torch.stack(rows), torch.zeros(len(rows), dtype=torch.long))
    if magface is not None:
        g = [
            1.0 / magface_magnitude(x, magface) + magface_magnitude(x, magface) / magface["u_a"] ** 2
            for x in embeddings
        ]
        loss = loss + magface["lambda_g"] * torch.stack(g).mean()
    if uss is not None:
        loss = loss + naive_uss(embeddings, labels, s, uss, classes)
    if ri is not None:
        loss = loss + naive_ri(embeddings, labels, weight, ri, classes)
    return loss


def naive_recognisability(x, y, weight, centre, classes):
    """xi of one embedding x (D,) of class y from the three proximities, one class at a time."""
    cos_y = cosine(x, weight[y])
    negatives = [cosine(x, weight[j]) for j in classes if j != y]
    cos_n = torch.stack(negatives).max() if negatives else torch.tensor(-1.0, dtype=x.dtype)
    d_ui = 1.0 - torch.dot(unit(x), unit(centre))
    d_p, d_n = 1.0 - cos_y, 1.0 - cos_n
    return d_ui * d_n / (d_p + d_n)


def naive_ri(embeddings, labels, weight, ri, classes):
    """diversion_weight * 1/B sum max(0, mu_UI + tau - xi_i) + regression_weight * 1/B sum smoothL1(xi^_i - xi_i).

    ri: {"centre" (D,), "ui_level", "tau", "diversion_weight", "regression_weight", "beta", "w" (D,), "b" 0-d};
    the regression target xi_i carries no gradient."""
    hinge, regression = [], []
    for i in range(embeddings.shape[0]):
        x, y = embeddings[i], int(labels[i])
        xi = naive_recognisability(x, y, weight, ri["centre"], classes)
        gap = ri["ui_level"] + ri["tau"] - xi
        hinge.append(gap if float(gap.detach()) > 0 else torch.zeros((), dtype=x.dtype))
        d = torch.dot(ri["w"], unit(x)) + ri["b"] - xi.detach()
        beta = ri["beta"]
        regression.append(0.5 * d * d / beta if abs(float(d.detach())) < beta else d.abs() - 0.5 * beta)
    count = embeddings.shape[0]
    return ri["diversion_weight"] * sum(hinge) / count + ri["regression_weight"] * sum(regression) / count


def naive_unrecognisable_centre(ui_embeddings, ui_labels, weight):
    """(unit mean of the unit embeddings, mean xi of those faces under every class centre)."""
    centre = unit(torch.stack([unit(e) for e in ui_embeddings]).sum(0))
    classes = list(range(weight.shape[0]))
    levels = [
        naive_recognisability(e, int(y), weight, centre, classes) for e, y in zip(ui_embeddings, ui_labels, strict=True)
    ]
    return centre, float(sum(levels) / len(levels))


def naive_uss(embeddings, labels, s, uss, classes):
    bank = {j: v for j, v in uss["bank"].items() if j in classes}
    if not bank:
        return torch.zeros((), dtype=embeddings.dtype)
    b, m = uss["b"], uss["m"]
    total = torch.zeros((), dtype=embeddings.dtype)
    for i in range(embeddings.shape[0]):
        y = int(labels[i])
        for j, centre in bank.items():
            c = torch.dot(unit(embeddings[i]), centre)
            if j == y:
                z = torch.clamp(s * (c - m) - b, -s, s)
                total = total + torch.log1p(torch.exp(-z))
            else:
                z = torch.clamp(s * c - b, -s, s)
                total = total + torch.log1p(torch.exp(z))
    return uss["weight"] * total / embeddings.shape[0]


def naive_uss_initial_bias(embeddings, labels, s, bank) -> float | None:
    """mean over rows with a written negative of log sum_{written j != y_i} exp(s c_ij)."""
    values = []
    for i in range(embeddings.shape[0]):
        y = int(labels[i])
        exps = [math.exp(s * float(torch.dot(unit(embeddings[i]), v))) for j, v in bank.items() if j != y]
        if exps:
            values.append(math.log(sum(exps)))
    return sum(values) / len(values) if values else None


def naive_bank_update(bank: dict, embeddings, labels) -> dict:
    """Each class of the batch: normalize(mean of the unit embeddings of its samples)."""
    bank = dict(bank)
    for y in sorted(set(int(v) for v in labels)):
        members = [unit(embeddings[i].detach()) for i in range(len(labels)) if int(labels[i]) == y]
        bank[y] = unit(torch.stack(members).mean(0))
    return bank
