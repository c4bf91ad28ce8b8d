"""Real faces for the detection and alignment tests: the YuNet model beside the repository (skips naming the file
when absent), the photos insightface ships, and photos made by pasting its aligned face at a known pose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.face_image import ARCFACE_DST

from . import REPO_ROOT

YUNET = REPO_ROOT / ".." / "shared" / "models" / "face_detection_yunet.onnx"


def yunet_path() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet model {YUNET} is absent (see the detector section of docs/photos.md)")
    return YUNET


def insightface_image(name: str) -> Path:
    """A photo from insightface's package data (t1.jpg: a group of six; Tom_Hanks_54745.png: an aligned face)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        pytest.skip("insightface is not installed (pip install insightface): its sample photos are the test faces")
    path = Path(spec.origin).parent / "data" / "images" / name
    if not path.is_file():
        pytest.skip(f"insightface's sample photo {path} is absent from this insightface install")
    return path


def pose_matrix(scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """(2, 3) similarity: the 112x112 face's centre goes to `centre`, scaled by `scale`, rotated `angle_deg`
    counter-clockwise on screen."""
    matrix = cv2.getRotationMatrix2D((56.0, 56.0), angle_deg, scale)
    matrix[:, 2] += np.asarray(centre) - np.array([56.0, 56.0])
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def pasted_face_photo(
    face: np.ndarray, scale: float, angle_deg: float, centre: tuple[float, float], canvas=(480, 640), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(BGR photo of `canvas` (H, W) with the aligned 112x112 `face` pasted at the pose, the template's five points
    in that photo) over a smooth random background (a bright face on a plain canvas is too easy)."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(
        rng.integers(40, 200, (6, 8, 3), dtype=np.uint8), (canvas[1], canvas[0]), interpolation=cv2.INTER_CUBIC
    )
    matrix = pose_matrix(scale, angle_deg, centre)
    size = (canvas[1], canvas[0])
    warped = cv2.warpAffine(face, matrix, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((112, 112), 255, np.uint8), matrix, size, flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    photo = (warped * alpha + background * (1.0 - alpha)).round().astype(np.uint8)
    return photo, apply(matrix, ARCFACE_DST)


def scrfd_layout_model(path: Path, faces: list[dict], side: int = 640) -> Path:
    """Write an ONNX graph with SCRFD's interface (input 1x3x`side`x`side`; 9 outputs: scores, box distances and
    keypoint offsets at strides 8, 16, 32 with 2 anchors per cell, in stride units) whose outputs are constants
    planting `faces` ({"stride", "row", "col", "score", "box": (x1, y1, x2, y2), "points": (5, 2)} in the
    letterboxed input's pixels). It stands in for insightface's det_*.onnx, which is not redistributable: it
    exercises insightface's routing and decoding and our use of it, not SCRFD's weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    strides, anchors = (8, 16, 32), 2
    counts = {stride: (side // stride) ** 2 * anchors for stride in strides}
    scores = {stride: np.zeros((counts[stride], 1), np.float32) for stride in strides}
    boxes = {stride: np.zeros((counts[stride], 4), np.float32) for stride in strides}
    points = {stride: np.zeros((counts[stride], 10), np.float32) for stride in strides}
    for face in faces:
        stride = face["stride"]
        index = (face["row"] * (side // stride) + face["col"]) * anchors
        centre = np.array([face["col"] * stride, face["row"] * stride], np.float32)
        x1, y1, x2, y2 = face["box"]
        scores[stride][index] = face["score"]
        boxes[stride][index] = np.array([centre[0] - x1, centre[1] - y1, x2 - centre[0], y2 - centre[1]]) / stride
        points[stride][index] = ((np.asarray(face["points"], np.float32) - centre) / stride).ravel()
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),  # ties the outputs to the input
    ]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    for kind, table in (("score", scores), ("bbox", boxes), ("kps", points)):
        for stride in strides:
            name = f"{kind}_{stride}"
            initializers.append(numpy_helper.from_array(table[stride], f"{name}_value"))
            nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(table[stride].shape)))
    graph = helper.make_graph(
        nodes,
        "scrfd_layout",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, side, side])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
