"""Face detection: YuNet on insightface's group photo and on faces pasted at known poses, agreement of the alignment
with insightface's norm_crop, SCRFD through insightface's model_zoo, which face is chosen, and wrong detector files."""

import warnings

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.face_detection import (
    DetectorError,
    DetectorSpec,
    Face,
    choose_face,
    open_detector,
)
from recipes.arcface_torch.face_image import ARCFACE_DST, align_face, similarity_transform
from tests.support.face_photos import apply, insightface_image, pasted_face_photo, scrfd_layout_model, yunet_path


@pytest.fixture(scope="module")
def yunet():
    return open_detector(DetectorSpec("yunet", str(yunet_path())))


@pytest.fixture(scope="module")
def group_photo():
    return cv2.imread(str(insightface_image("t1.jpg")))


def test_yunet_finds_the_six_faces_of_the_group_photo(yunet, group_photo):
    faces = yunet.detect(group_photo)
    assert len(faces) == 6
    assert [face.score for face in faces] == sorted((face.score for face in faces), reverse=True)
    assert min(face.score for face in faces) > 0.8
    for face in faces:
        x, y, w, h = face.box
        assert 60 < w < 160 and 60 < h < 200  # six adults at about the same distance
        inside = (face.landmarks[:, 0] > x) & (face.landmarks[:, 0] < x + w)
        inside &= (face.landmarks[:, 1] > y) & (face.landmarks[:, 1] < y + h)
        assert inside.all()
        left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]  # the template's order
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    centres = np.array([face.centre for face in faces])
    spacing = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(6) * 1e9
    assert spacing.min() > 80  # six different people, not one found twice


def test_alignment_agrees_with_insightface_norm_crop(yunet, group_photo):
    face_align = pytest.importorskip("insightface.utils.face_align")
    for face in yunet.detect(group_photo):
        ours = align_face(group_photo, face.landmarks)
        theirs = face_align.norm_crop(group_photo, face.landmarks.astype(np.float32))
        difference = np.abs(ours.astype(np.int16) - theirs)
        assert difference.max() <= 2 and difference.mean() < 0.05  # the same warp up to float rounding
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-image >= 0.26 renames estimate()
            matrix = face_align.estimate_norm(face.landmarks.astype(np.float32))
        ours_matrix = similarity_transform(face.landmarks, ARCFACE_DST)
        np.testing.assert_allclose(ours_matrix, matrix, rtol=1e-4, atol=1e-4 * np.abs(matrix).max())


POSES = [  # (scale, in-plane rotation in degrees, face centre in a 640x480 photo)
    (1.5, 0.0, (110.0, 110.0)),
    (2.0, 20.0, (420.0, 300.0)),
    (2.5, -25.0, (300.0, 220.0)),
    (3.0, 10.0, (320.0, 240.0)),
    (4.0, -5.0, (320.0, 240.0)),
]


@pytest.mark.parametrize(("scale", "angle", "centre"), POSES)
def test_a_face_pasted_at_a_known_pose_comes_back_aligned(yunet, scale, angle, centre):
    """insightface's aligned sample face, pasted scaled, rotated and moved: the alignment from the detected points
    must bring the face's true template points back onto the template (eyes within 5 px of 112)."""
    face = cv2.imread(str(insightface_image("Tom_Hanks_54745.png")))
    photo, truth = pasted_face_photo(face, scale, angle, centre)
    faces = yunet.detect(photo)
    assert len(faces) == 1
    matrix = similarity_transform(faces[0].landmarks, ARCFACE_DST)
    error = np.linalg.norm(apply(matrix, truth) - ARCFACE_DST, axis=1)
    assert error[:2].max() < 5.0 and error.max() < 8.0  # YuNet's points wander 1-4 px with the pose
    aligned = align_face(photo, faces[0].landmarks).astype(np.float64)
    correlation = np.corrcoef(aligned.ravel(), face.astype(np.float64).ravel())[0, 1]
    assert correlation > 0.8  # the same face, the same way up


def test_large_photos_are_detected_at_the_detection_size_with_points_in_full_resolution(yunet):
    face = cv2.imread(str(insightface_image("Tom_Hanks_54745.png")))
    photo, truth = pasted_face_photo(face, 6.0, 0.0, (1100.0, 700.0), canvas=(1500, 2000))
    faces = yunet.detect(photo)  # detected on a 640x480 copy
    small = yunet.detect(cv2.resize(photo, (640, 480), interpolation=cv2.INTER_AREA))
    assert len(faces) == len(small) == 1
    scale = np.array([2000 / 640, 1500 / 480])
    np.testing.assert_allclose(faces[0].landmarks, small[0].landmarks * scale, rtol=1e-6)
    np.testing.assert_allclose(faces[0].box, (np.array(small[0].box).reshape(2, 2) * scale).ravel(), rtol=1e-6)
    eye_distance = np.linalg.norm(truth[1] - truth[0])
    assert np.linalg.norm(faces[0].landmarks[:2] - truth[:2], axis=1).max() < 0.06 * eye_distance


def test_a_photo_without_a_face_gives_no_detection(yunet):
    flat = cv2.resize(np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8), (320, 240))
    assert yunet.detect(flat) == []


def face_at(x, y, w, h, score):
    return Face((x, y, w, h), score, np.zeros((5, 2)))


def test_choose_picks_by_score_size_centre_or_refuses_several():
    shape = (400, 400, 3)
    central = face_at(170, 170, 60, 60, 0.80)  # the subject, in the middle
    sharp = face_at(0, 0, 50, 50, 0.95)  # a bystander in the corner with a higher score
    big = face_at(250, 250, 140, 140, 0.70)
    faces = [sharp, central, big]
    assert choose_face(faces, shape)[0] is central
    assert choose_face(faces, shape, "score")[0] is sharp
    assert choose_face(faces, shape, "largest")[0] is big
    assert choose_face(faces, shape, "central")[0] is central
    assert choose_face(faces, shape, "only") == (None, faces)
    assert choose_face([central], shape, "only")[0] is central
    chosen, kept = choose_face(faces, shape, "score", min_size=55)
    assert chosen is central and kept == [central, big]
    assert choose_face(faces, shape, min_size=500) == (None, [])
    with pytest.raises(ValueError, match="--choose 'best' is unknown; use one of central-score, score"):
        choose_face(faces, shape, "best")


def test_wrong_detector_files_say_what_they_are_and_where_to_get_yunet(tmp_path):
    missing = tmp_path / "yunet.onnx"
    with pytest.raises(DetectorError, match=f"YuNet model {missing} not found; get it from OpenCV's model zoo"):
        open_detector(DetectorSpec("yunet", str(missing)))
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(DetectorError, match=f"{text} is not a YuNet face detector OpenCV can load"):
        open_detector(DetectorSpec("yunet", str(text)))
    with pytest.raises(DetectorError, match="--min-score 1.5 must lie in"):
        open_detector(DetectorSpec("yunet", str(text), min_score=1.5))
    with pytest.raises(DetectorError, match="detector kind 'mtcnn' is unknown"):
        open_detector(DetectorSpec("mtcnn", str(text)))


def test_an_onnx_model_that_is_not_yunet_is_refused(tmp_path):
    pytest.importorskip("onnx")
    other = scrfd_layout_model(tmp_path / "det_other.onnx", [])
    with pytest.raises(DetectorError, match=f"{other} (loads but does not run as YuNet|is not a YuNet)"):
        open_detector(DetectorSpec("yunet", str(other)))


SCRFD_FACES = [  # in the 640x640 letterboxed input; the photo is 1280x960, so SCRFD scales by 0.5
    {"stride": 16, "row": 15, "col": 20, "score": 0.80, "box": (270, 180, 370, 300), "points": ARCFACE_DST + 264},
    {"stride": 32, "row": 2, "col": 2, "score": 0.95, "box": (40, 30, 90, 95), "points": ARCFACE_DST * 0.4 + 42},
]


@pytest.fixture()
def scrfd_model(tmp_path):
    pytest.importorskip("insightface")
    pytest.importorskip("onnxruntime")
    return scrfd_layout_model(tmp_path / "det_layout.onnx", SCRFD_FACES)


def test_scrfd_through_insightface_model_zoo_gives_boxes_and_points_in_photo_pixels(scrfd_model):
    detector = open_detector(DetectorSpec("scrfd", str(scrfd_model)))
    faces = detector.detect(np.zeros((960, 1280, 3), np.uint8))
    assert [round(face.score, 4) for face in faces] == [0.95, 0.8]
    for face, planted in zip(faces, SCRFD_FACES[::-1], strict=True):
        x1, y1, x2, y2 = np.array(planted["box"], np.float64) * 2
        np.testing.assert_allclose(face.box, (x1, y1, x2 - x1, y2 - y1), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(face.landmarks, np.asarray(planted["points"]) * 2, rtol=1e-5, atol=1e-3)
    assert choose_face(faces, (960, 1280, 3))[0] is faces[1]  # the central face, not the sharper corner one
    sure = open_detector(DetectorSpec("scrfd", str(scrfd_model), min_score=0.9, detection_side=320))
    assert sure.input_size == (640, 640)  # the model's fixed input size wins over --detection-size
    assert [face.score for face in sure.detect(np.zeros((960, 1280, 3), np.uint8))] == [pytest.approx(0.95)]


def test_scrfd_model_folders_and_foreign_models(scrfd_model, tmp_path):
    folder = scrfd_model.parent
    assert open_detector(DetectorSpec("scrfd", str(folder))).path == scrfd_model
    (folder / "det_second.onnx").write_bytes(scrfd_model.read_bytes())
    with pytest.raises(
        DetectorError, match=r"should hold exactly one det_\*.onnx \(found: det_layout.onnx, det_second"
    ):
        open_detector(DetectorSpec("scrfd", str(folder)))
    with pytest.raises(DetectorError, match="SCRFD model .* not found; pass a det_"):
        open_detector(DetectorSpec("scrfd", str(tmp_path / "absent.onnx")))
    text = tmp_path / "w600k_r50.onnx"
    text.write_text("not a model")
    with pytest.raises(DetectorError, match=f"{text} is not an ONNX model insightface can load"):
        open_detector(DetectorSpec("scrfd", str(text)))


def test_a_recognition_model_is_not_taken_for_a_detector(tmp_path):
    pytest.importorskip("insightface")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input.1"], ["embedding"])],
        "recognition_shaped",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3 * 112 * 112])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "w600k_r50.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DetectorError, match=f"{path} is not a SCRFD face detector with landmarks .*recognition"):
        open_detector(DetectorSpec("scrfd", str(path)))
