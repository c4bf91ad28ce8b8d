"""pack_rec on real-world folders: OpenCV formats, grey images, --resize and --landmarks."""

import cv2
import numpy as np

from recipes.arcface_torch.cli import pack_rec
from recipes.arcface_torch.datasets.image_folder_faces import ImageFolderFaces
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.face_image import ARCFACE_DST


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_pgm_grey_tif_webp_faces_are_packed_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (112, 112), dtype=np.uint8)
    _write(tmp_path / "in" / "ann" / "0.pgm", grey)
    _write(tmp_path / "in" / "ann" / "1.tif", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    _write(tmp_path / "in" / "ben" / "0.webp", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    assert ImageFolderFaces(tmp_path / "in").num_classes == 2  # the training reader lists them too
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "rec"), "--quiet"]) == 0
    faces = RecordIOFaces(tmp_path / "rec", flip=False)
    assert len(faces) == 3 and faces.num_classes == 2
    image, label = faces[0]
    assert int(label) == 0 and image.shape == (3, 112, 112)
    restored = np.round(image.numpy() * 127.5 + 127.5)
    assert np.abs(restored[0] - restored[2]).max() <= 1  # grey stays grey
    assert np.abs(restored[0] - grey).mean() < 12  # JPEG q95 of noise


def test_resize_and_landmarks_bring_every_face_to_112(tmp_path, capsys):
    _write(tmp_path / "in" / "ann" / "crop.png", np.full((160, 140, 3), 70, np.uint8))
    photo = np.zeros((240, 200, 3), np.uint8)
    for x, y in np.round(ARCFACE_DST * 1.5 + 10).astype(int):
        photo[y - 1 : y + 2, x - 1 : x + 2] = 255
    _write(tmp_path / "in" / "ben" / "photo.jpg", photo)
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "no"), "--quiet"]) == 1
    assert "crop.png: image is 140x160, expected 112x112; pass --resize 112" in capsys.readouterr().err
    landmarks = tmp_path / "landmarks.txt"
    landmarks.write_text("ben/photo.jpg " + " ".join(f"{v:.2f}" for v in (ARCFACE_DST * 1.5 + 10).ravel()) + "\n")
    assert (
        pack_rec.main(
            [str(tmp_path / "in"), str(tmp_path / "rec"), "--quiet", "--resize", "112", "--landmarks", str(landmarks)]
        )
        == 0
    )
    faces = RecordIOFaces(tmp_path / "rec", flip=False)
    crop = np.round(faces[0][0].numpy() * 127.5 + 127.5)
    aligned = np.round(faces[1][0].numpy() * 127.5 + 127.5)[0]
    assert abs(crop.mean() - 70) < 2
    x, y = np.round(ARCFACE_DST[2]).astype(int)
    assert aligned[y - 1 : y + 2, x - 1 : x + 2].max() > 100  # the nose dot sits on the template's nose
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "bad"), "--quiet", "--resize", "0"]) == 1
    assert "--resize 0 must be a positive size" in capsys.readouterr().err


def test_pack_rec_refuses_to_overwrite(identity_folder, identity_rec, capsys):
    assert pack_rec.main([str(identity_folder), str(identity_rec), "--quiet"]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert pack_rec.main([str(identity_folder), str(identity_rec), "--quiet", "--force"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {identity_rec}/train.rec, train.idx and property: 9 images")
    assert pack_rec.main([str(identity_folder), str(identity_rec), "--quiet", "--overwrite"]) == 0  # deprecated alias
    assert "note: --overwrite is deprecated; use --force" in capsys.readouterr().err


def test_pack_rec_bad_image_leaves_nothing(tmp_path, capsys):
    (tmp_path / "in" / "x").mkdir(parents=True)
    (tmp_path / "in" / "x" / "0.jpg").write_bytes(b"broken")
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 1
    assert "0.jpg: could not decode the image" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_resize_of_non_square_faces_is_said_once_and_crops_by_default(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        image = np.zeros((100, 150, 3), np.uint8)
        image[:, 25:125] = 200  # the middle square is bright, the side strips black
        _write(tmp_path / "in" / "ann" / name, image)
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "rec"), "--quiet", "--resize", "112"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: ") == 1
    assert "a.png is 150x100, not the shape of 112x112: centre-cropped to 100x100 before resizing" in err
    face = np.round(RecordIOFaces(tmp_path / "rec", flip=False)[0][0].numpy() * 127.5 + 127.5)
    assert face.min() > 190  # only the bright square is left
    args = [str(tmp_path / "in"), str(tmp_path / "rec2"), "--quiet", "--resize", "112", "--resize-mode", "stretch"]
    assert pack_rec.main(args) == 0
    assert "stretched to 112x112, which changes the face's proportions" in capsys.readouterr().err
    face = np.round(RecordIOFaces(tmp_path / "rec2", flip=False)[0][0].numpy() * 127.5 + 127.5)
    assert face[:, :, :10].max() < 20  # the black strips are still there, squeezed
