"""align_faces: a folder of photos -> aligned faces, report, landmarks file; the choice among several faces, the
fallback, resume after an interrupted run, and each misuse with its one-line message and exit code."""

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from recipes.arcface_torch import photo_alignment
from recipes.arcface_torch.atomic_file import DiskFullError
from recipes.arcface_torch.cli import align_faces, pack_rec
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.face_image import ARCFACE_DST, similarity_transform
from tests.support import REPO_ROOT
from tests.support.face_photos import apply, insightface_image, pasted_face_photo, yunet_path

POSES = {  # alice's photos: (scale, rotation, centre) of the pasted face
    "a_small.jpg": (1.5, 0.0, (150.0, 130.0)),
    "b_turned.png": (2.5, -20.0, (330.0, 250.0)),
    "c_grey.pgm": (3.0, 10.0, (320.0, 240.0)),
}


@pytest.fixture()
def photos(tmp_path):
    """alice: three pasted faces (JPEG, PNG, grey PGM); bob: the group photo, a photo without a face, a corrupt file."""
    root = tmp_path / "photos"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    face = cv2.imread(str(insightface_image("Tom_Hanks_54745.png")))
    truth = {}
    for seed, (name, (scale, angle, centre)) in enumerate(POSES.items()):
        photo, points = pasted_face_photo(face, scale, angle, centre, seed=seed)
        if name.endswith(".pgm"):
            photo = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
        assert cv2.imwrite(str(root / "alice" / name), photo)
        truth[f"alice/{name}"] = points
    (root / "bob" / "group.jpg").write_bytes(insightface_image("t1.jpg").read_bytes())
    wall = cv2.resize(np.random.default_rng(5).integers(0, 255, (3, 4, 3), dtype=np.uint8), (400, 300))
    assert cv2.imwrite(str(root / "bob" / "wall.png"), wall)
    (root / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    (root / "bob" / "notes.txt").write_text("not a photo")
    return root, truth


def run(argv, capsys):
    code = align_faces.main([str(value) for value in argv])
    out, err = capsys.readouterr()
    return code, out, err


def base_args(photos_root, output):
    return [photos_root, output, "--yunet", yunet_path(), "--workers", "1", "--quiet"]


def read_report(path):
    with open(path, newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_a_folder_of_photos_becomes_aligned_faces_a_report_and_a_landmarks_file(photos, tmp_path, capsys):
    root, truth = photos
    output = tmp_path / "aligned"
    code, out, err = run(base_args(root, output), capsys)
    assert code == 0, err
    assert out.startswith(
        f"wrote {output}: aligned 4 of 6 photos (1 chosen among several faces); fallback 0; no face 1"
    )
    assert "; several faces 0; unreadable 1;" in out and out.endswith(f"report {output / 'align_report.csv'}\n")
    assert out.count("\n") == 1
    report = read_report(output / "align_report.csv")
    assert list(report) == [
        "alice/a_small.jpg",
        "alice/b_turned.png",
        "alice/c_grey.pgm",
        *sorted(["bob/broken.jpg", "bob/group.jpg", "bob/wall.png"]),
    ]
    assert report["bob/group.jpg"]["status"] == "aligned" and report["bob/group.jpg"]["faces"] == "6"
    assert report["bob/group.jpg"]["message"] == "chose 1 of 6 faces by --choose central-score"
    assert report["bob/wall.png"]["status"] == "no_face" and report["bob/wall.png"]["message"] == "no face found"
    assert report["bob/broken.jpg"]["status"] == "unreadable"
    assert "not an image OpenCV can decode (103 bytes)" in report["bob/broken.jpg"]["message"]
    assert not (output / "bob" / "wall.jpg").exists() and not (output / "bob" / "broken.jpg").exists()
    for relative, points in truth.items():
        row = report[relative]
        assert row["status"] == "aligned" and row["faces"] == "1" and float(row["score"]) > 0.5
        assert row["output"] == relative.rsplit(".", 1)[0] + ".jpg"
        face = cv2.imread(str(output / row["output"]))
        assert face.shape == (112, 112, 3)
        landmarks = np.array(row["landmarks"].split(), dtype=np.float64).reshape(5, 2)
        matrix = similarity_transform(landmarks, ARCFACE_DST)
        assert np.linalg.norm(apply(matrix, points[:2]) - ARCFACE_DST[:2], axis=1).max() < 5.0  # eyes on the template
    lines = (output / "landmarks.txt").read_text().splitlines()
    assert lines[0].startswith("#") and [line.split()[0] for line in lines[1:]] == [
        "alice/a_small.jpg",
        "alice/b_turned.png",
        "alice/c_grey.pgm",
        "bob/group.jpg",
    ]
    assert all(len(line.split()) == 11 for line in lines[1:])


def test_the_aligned_tree_and_the_landmarks_file_give_the_same_faces_to_pack_rec(photos, tmp_path, capsys):
    root, _ = photos
    for name in ("wall.png", "broken.jpg"):  # the landmarks route needs a landmark line for every photo
        (root / "bob" / name).unlink()
    output = tmp_path / "aligned"
    assert run(base_args(root, output), capsys)[0] == 0
    assert pack_rec.main([str(output), str(tmp_path / "from_tree"), "--quiet"]) == 0
    landmarks = output / "landmarks.txt"
    assert pack_rec.main([str(root), str(tmp_path / "from_points"), "--quiet", "--landmarks", str(landmarks)]) == 0
    capsys.readouterr()
    tree = RecordIOFaces(tmp_path / "from_tree", flip=False)
    points = RecordIOFaces(tmp_path / "from_points", flip=False)
    assert len(tree) == len(points) == 4
    for index in range(4):
        (a, label_a), (b, label_b) = tree[index], points[index]
        assert int(label_a) == int(label_b)
        assert float((a - b).abs().mean()) < 2.0 / 127.5  # the same warp, JPEG-encoded by two tools


def test_fallback_keeps_a_faceless_photo_as_its_centre_crop_and_force_removes_it_again(photos, tmp_path, capsys):
    root, _ = photos
    output = tmp_path / "aligned"
    code, out, _ = run([*base_args(root, output), "--fallback", "center-crop"], capsys)
    assert code == 0 and "; fallback 1; no face 0;" in out
    row = read_report(output / "align_report.csv")["bob/wall.png"]
    assert row["status"] == "fallback" and row["message"] == "no face found; kept the centre crop"
    kept = cv2.imread(str(output / "bob" / "wall.jpg"))
    wall = cv2.imread(str(root / "bob" / "wall.png"))
    expected = cv2.resize(wall[:, 50:350], (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(kept.astype(int) - expected).mean() < 2.0
    assert run([*base_args(root, output), "--force"], capsys)[0] == 0
    assert not (output / "bob" / "wall.jpg").exists()  # no stale face for a photo that now has none


def test_choose_only_lists_a_photo_with_several_faces_instead_of_guessing(photos, tmp_path, capsys):
    root, _ = photos
    output = tmp_path / "aligned"
    code, out, _ = run([*base_args(root, output), "--choose", "only", "--report", tmp_path / "report.json"], capsys)
    assert code == 0 and "aligned 3 of 6 photos" in out and "several faces 1" in out
    report = {row["path"]: row for row in json.loads((tmp_path / "report.json").read_text())}
    assert report["bob/group.jpg"] == {
        "path": "bob/group.jpg",
        "status": "several_faces",
        "faces": 6,
        "score": None,
        "box": None,
        "landmarks": None,
        "output": None,
        "message": "6 faces and --choose only",
    }
    assert not (output / "align_report.csv").exists()


def test_min_size_and_min_score_remove_faces_before_the_choice(photos, tmp_path, capsys):
    root, _ = photos
    code, out, _ = run([*base_args(root, tmp_path / "big"), "--min-size", "180"], capsys)
    assert code == 0
    report = read_report(tmp_path / "big" / "align_report.csv")
    assert report["alice/a_small.jpg"]["status"] == "no_face"  # 168 px wide
    assert report["alice/a_small.jpg"]["message"] == "1 face(s) smaller than --min-size 180 px"
    assert report["alice/c_grey.pgm"]["status"] == "aligned" and report["bob/group.jpg"]["status"] == "no_face"
    code, out, _ = run([*base_args(root, tmp_path / "sure"), "--min-score", "0.99"], capsys)
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'sure'}: aligned 0 of 6 photos")


def test_resume_keeps_finished_photos_and_redoes_changed_or_missing_ones(photos, tmp_path, capsys):
    root, _ = photos
    output = tmp_path / "aligned"
    args = [*base_args(root, output), "--json"]
    code, out, _ = run(args, capsys)
    first = json.loads(out)
    assert code == 0 and first["processed"] == 6 and first["kept"] == 0
    report = (output / "align_report.csv").read_bytes()
    stamp = (output / "alice" / "a_small.jpg").stat().st_mtime_ns
    second = json.loads(run(args, capsys)[1])
    assert second["processed"] == 0 and second["kept"] == 6 and second["counts"] == first["counts"]
    assert (output / "align_report.csv").read_bytes() == report
    assert (output / "alice" / "a_small.jpg").stat().st_mtime_ns == stamp
    # a killed run: one face never written, one left empty by a power cut, the state's last line torn; a photo
    # replaced since
    (output / "alice" / "b_turned.jpg").unlink()
    (output / "alice" / "c_grey.jpg").write_bytes(b"")
    with open(output / photo_alignment.STATE_NAME, "a") as state:
        state.write('{"path": "alice/c_gr')
    os.utime(root / "bob" / "group.jpg", ns=(1, 1))
    third = json.loads(run(args, capsys)[1])
    assert third["processed"] == 3 and third["kept"] == 3 and third["counts"] == first["counts"]
    assert (output / "alice" / "b_turned.jpg").is_file() and (output / "alice" / "c_grey.jpg").stat().st_size > 0
    assert (output / "align_report.csv").read_bytes() == report


def test_other_settings_on_the_same_output_need_force(photos, tmp_path, capsys):
    root, _ = photos
    output = tmp_path / "aligned"
    assert run(base_args(root, output), capsys)[0] == 0
    code, out, err = run([*base_args(root, output), "--choose", "largest"], capsys)
    assert code == 1 and out == ""
    assert err == (
        f"error: {output} was aligned with other settings (choose 'central-score' -> 'largest'); pass --force to "
        f"redo every photo, or choose another output folder\n"
    )
    code, out, _ = run([*base_args(root, output), "--choose", "largest", "--force", "--json"], capsys)
    assert code == 0 and json.loads(out)["processed"] == 6


def test_an_interrupted_run_says_how_to_resume_and_resumes(photos, tmp_path, capsys, monkeypatch):
    root, _ = photos
    output = tmp_path / "aligned"
    real = photo_alignment.align_photo
    calls = []

    def interrupted(photo, detector, settings):
        calls.append(photo.relative)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(photo, detector, settings)

    monkeypatch.setattr(photo_alignment, "align_photo", interrupted)
    code, out, err = run(base_args(root, output), capsys)
    assert code == 130 and out == ""
    assert err == "interrupted; the photos finished so far are kept: run the same command to resume\n"
    monkeypatch.setattr(photo_alignment, "align_photo", real)
    code, out, _ = run([*base_args(root, output), "--json"], capsys)
    assert code == 0 and json.loads(out)["kept"] == 2 and json.loads(out)["processed"] == 4


def test_no_detector_names_where_to_get_one(photos, tmp_path, capsys):
    root, _ = photos
    code, out, err = run([root, tmp_path / "aligned"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("error: no face detector given; pass --yunet face_detection_yunet_2023mar.onnx (from https")
    assert "--scrfd" in err and not (tmp_path / "aligned").exists()


def test_a_wrong_detector_file_is_one_line_and_writes_nothing(photos, tmp_path, capsys):
    root, _ = photos
    model = tmp_path / "yunet.onnx"
    model.write_bytes(b"<html>404 Not Found</html>")
    code, out, err = run([root, tmp_path / "aligned", "--yunet", model, "--quiet"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: {model} is not a YuNet face detector OpenCV can load (")
    assert err.endswith(
        "get the model from OpenCV's model zoo, https://github.com/opencv/opencv_zoo/tree/main/models/"
        "face_detection_yunet (face_detection_yunet_2023mar.onnx)\n"
    )
    assert not (tmp_path / "aligned").exists()


def test_unreadable_and_missing_folders_are_one_line(photos, tmp_path, capsys, monkeypatch):
    root, _ = photos
    scandir = os.scandir

    def refuse_bob(path):
        if str(path).endswith("bob"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(photo_alignment.os, "scandir", refuse_bob)  # root reads every folder, so refuse by hand
    code, out, err = run(base_args(root, tmp_path / "aligned"), capsys)
    assert (code, out) == (1, "")
    assert err == f"error: cannot read the identity folder {root / 'bob'} (Permission denied); check its permissions\n"
    monkeypatch.setattr(photo_alignment.os, "scandir", scandir)
    code, _, err = run(base_args(tmp_path / "nowhere", tmp_path / "aligned"), capsys)
    assert code == 1
    assert err == (
        f"error: photo folder {tmp_path / 'nowhere'} does not exist; pass a folder with one sub-folder per identity\n"
    )
    code, _, err = run(base_args(root, root / "aligned"), capsys)
    assert code == 1
    assert err == f"error: output {root / 'aligned'} lies inside the photo folder {root}; choose a folder outside it\n"
    (root / "alice" / "a_small.png").write_bytes((root / "alice" / "b_turned.png").read_bytes())
    code, _, err = run(base_args(root, tmp_path / "aligned"), capsys)
    assert code == 1
    assert err == (
        "error: photos alice/a_small.jpg and alice/a_small.png would both be written as alice/a_small.jpg; "
        "rename one of them\n"
    )


def test_a_full_disk_is_one_line_and_the_finished_photos_resume(photos, tmp_path, capsys, monkeypatch):
    root, _ = photos
    output = tmp_path / "aligned"
    real = photo_alignment.write_bytes_atomically

    def full(path, data, durable=True):
        if path.suffix == ".jpg" and path.parent.name == "bob":
            raise DiskFullError(28, f"no space left on the device while writing {path}; free space there and run again")
        return real(path, data, durable)

    monkeypatch.setattr(photo_alignment, "write_bytes_atomically", full)
    code, out, err = run(base_args(root, output), capsys)
    assert code == 1 and out == ""
    assert err == (
        f"error: no space left on the device while writing {output / 'bob' / 'group.jpg'}; free space there and run "
        f"again\n"
    )
    monkeypatch.setattr(photo_alignment, "write_bytes_atomically", real)
    code, out, _ = run([*base_args(root, output), "--json"], capsys)
    assert code == 0 and json.loads(out)["kept"] == 4  # alice's three and bob/broken.jpg, listed before group.jpg


@pytest.mark.slow
def test_worker_processes_give_the_same_report_as_one_process(photos, tmp_path, capsys):
    root, _ = photos
    assert run(base_args(root, tmp_path / "one"), capsys)[0] == 0
    args = [root, tmp_path / "two", "--yunet", yunet_path(), "--workers", "2", "--quiet", "--json"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert json.loads(out)["workers"] == 2
    one, two = read_report(tmp_path / "one" / "align_report.csv"), read_report(tmp_path / "two" / "align_report.csv")
    assert one == two
    for row in one.values():
        if row["output"]:
            assert (tmp_path / "one" / row["output"]).read_bytes() == (tmp_path / "two" / row["output"]).read_bytes()


def test_the_tool_runs_without_torch_or_insightface(photos, tmp_path):
    """--help is covered by tests/tools/test_cli_startup.py; here a real run, with those packages made unimportable."""
    root, _ = photos
    blocked = tmp_path / "blocked"
    for name in ("torch", "onnx", "onnxruntime", "insightface"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked), str(REPO_ROOT)]))
    tool = str(REPO_ROOT / "tools" / "align_faces.py")
    args = [tool, str(root), str(tmp_path / "aligned"), "--yunet", str(yunet_path()), "--workers", "2", "--json"]
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["aligned"] == 4
    assert done.stderr == ""  # --json: no progress bar


def test_a_photo_the_detector_fails_on_is_reported_and_the_run_goes_on(photos, tmp_path, capsys, monkeypatch):
    from recipes.arcface_torch import face_detection

    root, _ = photos
    real = face_detection.YuNetDetector.detect

    def fails_on_wide(self, image):
        if image.shape[:2] == (300, 400):  # bob/wall.png
            raise face_detection.DetectionFailed("Layer 'conv1' failed")
        return real(self, image)

    monkeypatch.setattr(face_detection.YuNetDetector, "detect", fails_on_wide)
    code, out, _ = run(base_args(root, tmp_path / "aligned"), capsys)
    assert code == 0 and "; detector failed 1;" in out and "aligned 4 of 6" in out
    row = read_report(tmp_path / "aligned" / "align_report.csv")["bob/wall.png"]
    assert row["status"] == "failed"
    assert row["message"] == "the detector failed on this 400x300 image: Layer 'conv1' failed"
