"""IJB-style template verification on a tiny folder built inside the test."""

import json
import math

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from skimage.transform import SimilarityTransform
from torch import nn

from recipes.arcface_torch.cli import eval_ijb
from recipes.arcface_torch.evaluation.ijb import evaluate_ijb, load_ijb_protocol, template_features
from recipes.arcface_torch.evaluation.tar_far import IJB_FARS
from recipes.arcface_torch.face_image import ARCFACE_DST, align_face, similarity_transform

NUM_TEMPLATES = 10  # templates 0..9; template t shows identity t // 2


class PooledNet(nn.Module):
    """Tiny stand-in backbone: 4x4 average pooling of the face, then a fixed linear map to 16 dims."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 16, 16)

    def forward(self, x):
        return self.linear(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def make_ijb_folder(root, prefix="ijbc"):
    """2 images per template (template t: media 2t and 2t+1 for even t, one media for odd t);
    each image is the identity's pattern pasted at a random scale/offset, landmarks moved with it."""
    rng = np.random.default_rng(0)
    crops = root / "loose_crop"
    crops.mkdir(parents=True)
    (root / "meta").mkdir()
    identities = rng.integers(0, 256, size=(NUM_TEMPLATES // 2, 112, 112, 3), dtype=np.uint8)
    landmark_lines, media_lines = [], []
    for template in range(NUM_TEMPLATES):
        for k in range(2):
            name = f"{template}_{k}.jpg"
            scale = rng.uniform(1.1, 1.4)
            offset = rng.uniform(0, 20, size=2)
            matrix = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]])
            noisy = np.clip(identities[template // 2] + rng.normal(0, 8, (112, 112, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(crops / name), cv2.warpAffine(noisy, matrix, (180, 180)))
            points = ARCFACE_DST * scale + offset
            coords = " ".join(f"{value:.4f}" for value in points.reshape(-1))
            landmark_lines.append(f"{name} {coords} {rng.uniform(0.5, 1.0):.4f}")
            media = 2 * template + (k if template % 2 == 0 else 0)
            media_lines.append(f"{name} {template} {media}")
    pairs = [f"{2 * i} {2 * i + 1} 1" for i in range(NUM_TEMPLATES // 2)]
    pairs += [f"{a} {b} 0" for a in range(NUM_TEMPLATES) for b in range(a + 1, NUM_TEMPLATES) if a // 2 != b // 2]
    (root / "meta" / f"{prefix}_name_5pts_score.txt").write_text("\n".join(landmark_lines) + "\n")
    (root / "meta" / f"{prefix}_face_tid_mid.txt").write_text("\n".join(media_lines) + "\n")
    (root / "meta" / f"{prefix}_template_pair_label.txt").write_text("\n".join(pairs) + "\n")
    return len(pairs) - NUM_TEMPLATES // 2


def test_similarity_transform_matches_skimage_and_aligns():
    rng = np.random.default_rng(1)
    src = ARCFACE_DST * 1.7 + rng.normal(0, 2, size=(5, 2)) + 30
    expected = SimilarityTransform.from_estimate(src, ARCFACE_DST).params[:2]
    np.testing.assert_allclose(similarity_transform(src, ARCFACE_DST), expected, atol=1e-9)
    image = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(image, ARCFACE_DST), image)  # identity transform
    with pytest.raises(ValueError, match="same point"):
        similarity_transform(np.ones((5, 2)), ARCFACE_DST)


def test_template_features_match_naive_media_mean_template_sum():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(30, 4))
    templates = rng.integers(5, 9, size=30)
    medias = rng.integers(0, 3, size=30)
    ids, result = template_features(feats, templates, medias)
    assert ids.tolist() == sorted(set(templates.tolist()))
    for row, template in enumerate(ids):
        in_template = templates == template
        media_means = [feats[in_template & (medias == m)].mean(axis=0) for m in np.unique(medias[in_template])]
        total = np.sum(media_means, axis=0)
        np.testing.assert_allclose(result[row], total / np.linalg.norm(total), atol=1e-12)


def test_evaluate_ijb_on_tiny_folder(tmp_path):
    num_negatives = make_ijb_folder(tmp_path / "IJBC")
    results = evaluate_ijb(
        PooledNet(), tmp_path / "IJBC", "ijbc", batch_size=7, output_dir=tmp_path / "out", name="tiny", num_workers=1
    )
    assert results["num_images"] == 2 * NUM_TEMPLATES and results["num_templates"] == NUM_TEMPLATES
    assert results["num_pairs"] == num_negatives + NUM_TEMPLATES // 2
    assert list(results["tar_at_far"]) == list(IJB_FARS)
    for far, tar in results["tar_at_far"].items():
        if far * num_negatives < 1:  # 40 negatives support FAR >= 0.025 only
            assert math.isnan(tar) and "negative pairs" in results["tar_at_far_notes"][far]
        else:
            assert 0.0 <= tar <= 1.0 and results["tar_at_far_notes"][far] == ""
    scores = results["scores"]
    assert scores.shape == (results["num_pairs"],) and np.all(np.abs(scores) <= 1 + 1e-9)
    # Same-identity templates share a pattern, so they should score above the average impostor.
    assert scores[results["labels"] == 1].mean() > scores[results["labels"] == 0].mean()
    assert (tmp_path / "out" / "tiny_ijbc_roc.png").read_bytes().startswith(b"\x89PNG")
    np.testing.assert_allclose(np.load(tmp_path / "out" / "tiny_ijbc_scores.npy"), scores)


def test_missing_image_and_unknown_template_are_named(tmp_path):
    root = tmp_path / "IJBB"
    make_ijb_folder(root, prefix="ijbb")
    (root / "loose_crop" / "3_1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"ijbb_name_5pts_score.txt line 8: image .*3_1.jpg is missing"):
        load_ijb_protocol(root, "ijbb")
    assert load_ijb_protocol(root, "ijbb", check_images=False).num_images == 2 * NUM_TEMPLATES
    pair_file = root / "meta" / "ijbb_template_pair_label.txt"
    pair_file.write_text(pair_file.read_text() + "0 77 0\n")
    with pytest.raises(ValueError, match=r"template_pair_label.txt line \d+: template 77 has no image"):
        load_ijb_protocol(root, "ijbb", check_images=False)


def export_pooled_onnx(model, path):
    """The PooledNet graph written with onnx.helper (AveragePool 28x28 -> Flatten -> Gemm), dynamic batch."""
    weight = numpy_helper.from_array(model.linear.weight.detach().numpy(), "weight")
    bias = numpy_helper.from_array(model.linear.bias.detach().numpy(), "bias")
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["embedding"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 16])],
        initializer=[weight, bias],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def test_eval_ijb_cli_with_onnx_model(tmp_path, capsys):
    make_ijb_folder(tmp_path / "IJBC")
    model = PooledNet()
    export_pooled_onnx(model, tmp_path / "pooled.onnx")
    code = eval_ijb.main(
        [
            str(tmp_path / "pooled.onnx"),
            "--root",
            str(tmp_path / "IJBC"),
            "--output",
            str(tmp_path / "out"),
            "--json",
            "--quiet",
            "--workers",
            "1",
            "--batch-size",
            "8",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    direct = evaluate_ijb(model, tmp_path / "IJBC", "ijbc", batch_size=8, num_workers=1)
    assert payload["tar_at_far"]["0.1"] == pytest.approx(direct["tar_at_far"][0.1])
    assert payload["tar_at_far"]["1e-06"] is None and "1e-06" in payload["notes"]
    assert (tmp_path / "out" / "pooled_ijbc_roc.png").is_file()
    again = [str(tmp_path / "pooled.onnx"), "--root", str(tmp_path / "IJBC"), "--output", str(tmp_path / "out")]
    assert eval_ijb.main([*again, "--quiet"]) == 1  # results of that name are kept unless --force
    assert "pooled_ijbc_scores.npy already exists; pass --force" in capsys.readouterr().err
    assert eval_ijb.main([*again, "--quiet", "--force", "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("wrote ")
    assert eval_ijb.main([str(tmp_path / "missing.onnx"), "--root", str(tmp_path)]) == 1
    assert "missing.onnx does not exist" in capsys.readouterr().err
    assert eval_ijb.main([str(tmp_path / "pooled.onnx"), "--root", str(tmp_path / "nowhere"), "--quiet"]) == 1
    assert "ijbc_name_5pts_score.txt does not exist" in capsys.readouterr().err
