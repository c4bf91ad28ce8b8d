"""unpg-face-quality: scores of images, folders and a .bin, CSV and JSON, --build-centre, --erc; each bad input
(no centre saved, a half-precision model, an empty folder) one line and exit 1; --help without torch."""

import json

import cv2
import numpy as np
import pytest
import torch

from recipes.arcface_torch.cli import face_quality
from recipes.arcface_torch.datasets.synthetic_faces import synthetic_verification_set
from recipes.arcface_torch.evaluation.bin_file import encode_image, save_bin
from recipes.arcface_torch.recognisability_file import load_recognisability
from tests.support.quality_models import synthetic_faces, write_model_folder


@pytest.fixture
def faces_folder(tmp_path):
    folder = tmp_path / "faces"
    (folder / "person").mkdir(parents=True)
    for index, face in enumerate(synthetic_faces(4)):
        size = 112 if index else 48  # one crop of another size: resized
        cv2.imwrite(
            str(folder / "person" / f"{index}.png"), cv2.resize(cv2.cvtColor(face, cv2.COLOR_RGB2BGR), (size, size))
        )
    return folder


def run(argv, capsys):
    code = face_quality.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_scores_a_folder_and_writes_csv_and_json(tmp_path, faces_folder, capsys):
    model = write_model_folder(tmp_path / "run")
    code, out, err = run([model, faces_folder, "--csv", tmp_path / "s.csv", "--quiet"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == f"wrote {tmp_path / 's.csv'} (4 images)"
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "image,ri,ers,norm" and len(rows) == 5
    code, out, _ = run([model, faces_folder, "--json", "--scores", "ers,norm"], capsys)
    report = json.loads(out)
    assert code == 0 and report["scores"] == ["ers", "norm"] and len(report["images"]) == 4
    csv_ers = [float(r.split(",")[2]) for r in rows[1:]]
    assert np.allclose(csv_ers, [i["ers"] for i in report["images"]], atol=1e-6)
    code, _, err = run([model, faces_folder, "--csv", tmp_path / "s.csv"], capsys)
    assert code == 1 and "already exists; pass --force" in err


def test_build_centre_then_score_a_model_trained_without_ri(tmp_path, faces_folder, capsys):
    model = write_model_folder(tmp_path / "arcface", centre=False)
    code, out, err = run([model, faces_folder], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "no unrecognisable-identity centre saved at" in err and "--build-centre FACES" in err
    code, out, err = run([model, faces_folder, "--build-centre", "--quiet"], capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {model / 'recognisability.pt'} (unrecognisable-identity centre of 4 faces, 32-d)"
    assert not load_recognisability(model / "recognisability.pt").has_regressor
    code, out, _ = run([model, faces_folder, "--quiet"], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["image", "ers", "norm"]
    code, _, err = run([model, faces_folder, "--build-centre"], capsys)
    assert code == 1 and "already exists (it may hold the RI regressor" in err


def test_bad_inputs_are_one_line_each(tmp_path, faces_folder, capsys):
    model = write_model_folder(tmp_path / "run")
    state = torch.load(model / "model.pt", weights_only=True)
    half = write_model_folder(tmp_path / "half")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half / "model.pt")
    (tmp_path / "empty").mkdir()
    cases = [
        ([half, faces_folder], "holds float16 weights; face-quality scores are computed on the fp32 model"),
        ([model, tmp_path / "empty"], "holds no face images and no identity sub-folders; pass a folder of aligned"),
        ([model, tmp_path / "missing"], "does not exist; pass face images, folders of them, a RecordIO or a .bin"),
        ([model, faces_folder, "--erc", tmp_path / "e.png"], "--erc needs a .bin input"),
        ([model, faces_folder, "--scores", "sharpness"], "--scores 'sharpness' must list some of ri, ers, norm"),
    ]
    for argv, message in cases:
        code, out, err = run(argv, capsys)
        assert code == 1 and message in err and err.count("\n") == 1 and err.startswith("error: "), (argv, err)


@pytest.mark.slow
def test_error_versus_reject_on_a_bin(tmp_path, capsys):
    model = write_model_folder(tmp_path / "run")
    vset = synthetic_verification_set(40, 200, seed=0)
    save_bin(tmp_path / "pairs.bin", [encode_image(image, ".png") for image in vset.images], vset.issame)
    code, out, err = run(
        [model, tmp_path / "pairs.bin", "--erc", tmp_path / "erc.png", "--fmr", "1e-2", "--quiet"], capsys
    )
    assert code == 0, err
    assert (tmp_path / "erc.png").read_bytes()[:4] == b"\x89PNG"
    table = [
        line.split()
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[0] in ("ri", "ers", "norm", "random")
    ]
    assert [row[0] for row in table] == ["ri", "ers", "norm", "random"]
    assert len({row[1] for row in table}) == 1  # FNMR at 0% rejected is the same for every score
