"""Face files -> stored faces: formats, grey, resize, 5-point alignment, landmark file errors."""

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.face_files import NoteOnce, fit_shape, prepare_face, read_landmarks
from recipes.arcface_torch.face_image import ARCFACE_DST, decode_face


def dot_image(points, size=(200, 160)) -> np.ndarray:
    """Grey image (H, W) with a bright 3x3 dot at each landmark."""
    image = np.zeros(size, np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


def test_jpeg_png_of_the_right_size_are_stored_byte_for_byte(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg"):
        path = tmp_path / f"face{suffix}"
        cv2.imwrite(str(path), image)
        assert prepare_face(path) == path.read_bytes()


@pytest.mark.parametrize("suffix", [".pgm", ".tif", ".webp", ".bmp"])
def test_other_formats_and_grey_become_colour_jpeg(tmp_path, suffix):
    grey = np.tile(np.linspace(0, 255, 112, dtype=np.uint8), (112, 1))
    path = tmp_path / f"face{suffix}"
    assert cv2.imwrite(str(path), grey)
    data = prepare_face(path)
    assert data[:3] == b"\xff\xd8\xff"
    face = decode_face(data, "stored")
    assert face.shape == (112, 112, 3)
    assert np.abs(face[..., 0].astype(int) - grey).mean() < 3  # JPEG q95 of a smooth ramp


def test_resize_only_when_asked_and_the_error_names_the_options(tmp_path):
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), np.full((150, 130, 3), 90, np.uint8))
    with pytest.raises(ValueError, match=r"crop\.png: image is 130x150, expected 112x112; pass --resize 112"):
        prepare_face(path)
    face = decode_face(prepare_face(path, resize=True), "resized")
    assert face.shape == (112, 112, 3) and abs(int(face.mean()) - 90) <= 2


def test_landmarks_align_the_five_points_onto_the_template(tmp_path):
    # the template moved, scaled by 1.3 and shifted in a larger photo; alignment must bring it back
    points = ARCFACE_DST * 1.3 + np.array([20.0, 25.0])
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), dot_image(points))
    (tmp_path / "landmarks.txt").write_text(
        "# x y per point\nphoto.png " + " ".join(f"{v:.3f}" for v in points.ravel()) + "\n"
    )
    table = read_landmarks(tmp_path / "landmarks.txt", tmp_path)
    np.testing.assert_allclose(table[path.resolve()], points, atol=1e-3)
    face = decode_face(prepare_face(path, landmarks=table[path.resolve()]), "aligned")[..., 0]
    for x, y in np.round(ARCFACE_DST).astype(int):
        assert face[y - 1 : y + 2, x - 1 : x + 2].max() > 100  # every dot lands on its template point
    assert face[5:25, 5:25].max() < 30


def test_landmark_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "landmarks.txt"
    bad.write_text("a.png 1 2 3 4 5 6 7 8 9\n")
    with pytest.raises(ValueError, match=r"line 1: 'a.png 1 2 3 4 5 6 7 8 9' is not 'path x1 y1 ... x5 y5'"):
        read_landmarks(bad, tmp_path)
    with pytest.raises(FileNotFoundError, match="landmarks file .*nowhere.txt not found"):
        read_landmarks(tmp_path / "nowhere.txt", tmp_path)


def bands_image(height: int, width: int) -> np.ndarray:
    """Grey image whose left and right thirds are black, the middle white (so a crop and a squash differ)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, width // 3 : 2 * width // 3] = 255
    return image


@pytest.mark.parametrize(
    ("mode", "white_fraction", "said"),
    [
        ("crop", 200 / 300, "centre-cropped to 300x300 before resizing to 112x112"),  # 600x300: keeps x 150..450
        ("stretch", 1 / 3, "stretched to 112x112, which changes the face's proportions"),
        ("pad", 1 / 3, "padded with black to 600x600 before resizing to 112x112"),
    ],
)
def test_resize_of_a_non_square_image_crops_pads_or_stretches_and_says_so(tmp_path, mode, white_fraction, said):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), bands_image(300, 600))
    notes = []
    face = decode_face(prepare_face(path, resize=True, resize_mode=mode, note=notes.append), "resized")[..., 0]
    row = face[56].astype(np.float64) / 255
    assert row.mean() == pytest.approx(white_fraction, abs=0.03)
    if mode == "pad":
        assert face[:25].max() < 10 and face[-25:].max() < 10  # black bars above and below (JPEG rings a little)
        assert face[56].max() == 255
    assert len(notes) == 1 and notes[0].startswith(f"{path} is 600x300, not the shape of 112x112: {said} (")
    assert "--resize-mode" in notes[0]


def test_fit_shape_keeps_the_aspect_of_the_size_and_leaves_matching_images_alone():
    tall = np.zeros((160, 140, 3), np.uint8)
    assert fit_shape(tall, (112, 112), "crop").shape == (140, 140, 3)
    assert fit_shape(tall, (112, 112), "pad").shape == (160, 160, 3)
    assert fit_shape(tall, (112, 112), "stretch") is tall
    assert fit_shape(tall, (120, 96), "crop").shape == (160, 128, 3)
    square = np.zeros((200, 200, 3), np.uint8)
    assert fit_shape(square, (112, 112), "crop") is square
    with pytest.raises(ValueError, match="resize mode 'squash' is unknown; use one of crop, pad, stretch"):
        fit_shape(tall, (112, 112), "squash")


def test_a_square_resize_says_nothing(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.full((224, 224, 3), 40, np.uint8))
    notes = []
    prepare_face(path, resize=True, note=notes.append)
    assert notes == []


def test_note_once_passes_on_only_the_first_message():
    said = []
    note = NoteOnce(said.append)
    note("first")
    note("second")
    assert said == ["first"]
