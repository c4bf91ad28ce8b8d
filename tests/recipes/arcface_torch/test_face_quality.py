"""Face-quality scores by hand from the backbone's embedding, the recognisability file (save, load, every bad
input), and the unrecognisable-identity centre built in training and post hoc."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins.ri import RI
from recipes.arcface_torch.checkpoint import CheckpointError
from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces
from recipes.arcface_torch.degradations import unrecognisable
from recipes.arcface_torch.face_quality import QualityModel, load_quality_model, score_faces
from recipes.arcface_torch.recognisability_file import (
    Recognisability,
    RecognisabilityError,
    from_head,
    load_recognisability,
    save_recognisability,
)
from recipes.arcface_torch.unrecognisable_faces import (
    centre_indices,
    centre_of_faces,
    faces_to_input,
    refresh_unrecognisable_centres,
    tensor_to_face,
)
from tests.support.partial_fc_runs import make_head
from tests.support.quality_models import DIM, synthetic_faces, tiny_backbone, write_model_folder


def test_scores_are_the_equations_of_the_embedding(tmp_path):
    folder = write_model_folder(tmp_path / "run")
    model = load_quality_model(folder)
    faces = synthetic_faces(6)
    embeddings, scores = score_faces(model, faces)
    with torch.no_grad():
        x = tiny_backbone().eval()(faces_to_input(faces)).double()
    record = load_recognisability(folder / "recognisability.pt")
    unit = x / x.norm(dim=1, keepdim=True)
    assert model.scores == ("ri", "ers", "norm")
    np.testing.assert_allclose(embeddings, x.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores["ri"], (unit @ record.regressor_weight.double() + 0.3).numpy(), atol=1e-5)
    np.testing.assert_allclose(scores["ers"], (1 - unit @ record.centre.double()).numpy(), atol=1e-5)
    np.testing.assert_allclose(scores["norm"], x.norm(dim=1).numpy(), rtol=1e-5)
    only = load_quality_model(folder, scores=("norm", "ers"))
    assert only.scores == ("ers", "norm")  # columns always in the order ri, ers, norm


def test_scores_a_model_cannot_give_are_refused(tmp_path):
    without_regressor = write_model_folder(tmp_path / "built", regressor=False)
    assert load_quality_model(without_regressor).scores == ("ers", "norm")
    with pytest.raises(RecognisabilityError, match="score 'ri' needs a model trained with the 'ri' loss"):
        load_quality_model(without_regressor, scores=("ri",))
    no_centre = write_model_folder(tmp_path / "plain", centre=False)
    with pytest.raises(RecognisabilityError, match="no unrecognisable-identity centre saved at .*--build-centre"):
        load_quality_model(no_centre)
    assert load_quality_model(no_centre, scores=("norm",)).scores == ("norm",)


def test_half_precision_weights_are_refused(tmp_path):
    folder = write_model_folder(tmp_path / "run")
    state = torch.load(folder / "model.pt", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="holds float16 weights; face-quality scores are computed on the fp32"):
        load_quality_model(folder)


def test_recognisability_file_round_trip_and_bad_files(tmp_path):
    record = Recognisability(F.normalize(torch.randn(DIM), dim=0), 0.2, torch.randn(DIM), -0.1, "here")
    path = save_recognisability(record, tmp_path / "r.pt")
    loaded = load_recognisability(path, DIM)
    assert torch.equal(loaded.centre, record.centre) and torch.equal(loaded.regressor_weight, record.regressor_weight)
    assert (loaded.ui_level, loaded.regressor_bias, loaded.source) == (0.2, -0.1, "here")
    with pytest.raises(RecognisabilityError, match="holds a 32-d centre but the model gives 64-d embeddings"):
        load_recognisability(path, 64)
    data = record.as_dict()
    torch.save({**data, "centre": data["centre"].half()}, tmp_path / "half.pt")
    with pytest.raises(RecognisabilityError, match="holds a float16 centre; the quality scores are defined in float32"):
        load_recognisability(tmp_path / "half.pt")
    torch.save({**data, "centre": data["centre"] * 3}, tmp_path / "long.pt")
    with pytest.raises(RecognisabilityError, match="the centre is not a finite unit vector"):
        load_recognisability(tmp_path / "long.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(RecognisabilityError, match="is not a readable recognisability file"):
        load_recognisability(tmp_path / "junk.pt")


def test_from_head_holds_the_loss_buffers_once_a_centre_is_set():
    loss = RI()
    head = make_head([loss], 5, DIM, 32.0)
    assert from_head(head) is None
    loss.set_centre(torch.randn(DIM, dtype=torch.float64), 0.25)
    head.set_epoch(3)
    record = from_head(head)
    assert torch.allclose(record.centre.double(), loss.centre) and record.ui_level == 0.25
    assert record.regressor_weight.shape == (DIM,) and record.source == "ri loss, centre of epoch 3"


def test_centre_of_faces_is_the_mean_unit_embedding_of_their_unrecognisable_versions():
    backbone = tiny_backbone()
    faces = synthetic_faces(5)
    centre = centre_of_faces(backbone, faces, size=8, blur=1.5)
    with torch.no_grad():
        x = backbone(faces_to_input(np.stack([unrecognisable(f, 8, 1.5) for f in faces]))).double()
    expected = F.normalize(F.normalize(x, dim=1).sum(0), dim=0)
    assert torch.allclose(centre.double(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="no faces to build the unrecognisable-identity centre from"):
        centre_of_faces(backbone, faces[:0])


def test_training_refresh_builds_the_centre_from_degraded_training_faces_and_waits_for_start_epoch():
    dataset = SyntheticFaces(6, 3, seed=1)
    backbone = tiny_backbone()
    loss = RI(start_epoch=1, centre_images=8, centre_size=12, centre_blur=1.0)
    head = make_head([loss], 6, DIM, 32.0).float()
    assert refresh_unrecognisable_centres(head, backbone, dataset, 0, 7, 0, 1, torch.device("cpu")) == 0
    assert not bool(loss.has_centre)
    assert refresh_unrecognisable_centres(head, backbone, dataset, 1, 7, 0, 1, torch.device("cpu")) == 1
    indices = centre_indices(len(dataset), 8, 7, 1, 0, 1)
    assert len(set(indices.tolist())) == 8
    faces = np.stack([unrecognisable(tensor_to_face(dataset[int(i)][0]), 12, 1.0) for i in indices])
    with torch.no_grad():
        x = backbone(faces_to_input(faces)).double()
    expected = F.normalize(F.normalize(x, dim=1).sum(0), dim=0)
    assert torch.allclose(loss.centre.double(), expected, atol=1e-5)
    assert bool(loss.has_centre) and 0 < float(loss.ui_level) < 2


def test_tensor_to_face_inverts_the_network_input():
    faces = synthetic_faces(2)
    assert np.array_equal(tensor_to_face(faces_to_input(faces)[1]), faces[1])


def test_quality_model_needs_a_centre_for_ers():
    with pytest.raises(RecognisabilityError, match="need the unrecognisable-identity centre"):
        QualityModel(tiny_backbone(), None, ("ers",))
