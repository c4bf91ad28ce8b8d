"""Face detectors that give a box, a score and five landmarks per face: the step before alignment and packing.

    detector = open_detector(DetectorSpec("yunet", "face_detection_yunet_2023mar.onnx", min_score=0.5))
    faces = detector.detect(image_bgr)                    # [Face], best score first
    face = choose_face(faces, image_bgr.shape, "central-score", min_size=20)

Two detectors, both ONNX files the user already has (never downloaded here):
  - YuNet (OpenCV model zoo, MIT) through cv2.FaceDetectorYN: opencv-python is enough.
  - SCRFD (insightface's det_*.onnx, or a model folder such as buffalo_l) through insightface.model_zoo.
Landmarks come in the arcface template's order: the eye on the image's left, the other eye, the nose tip, the
mouth corner on the image's left, the other corner (both detectors' native order), in pixels of the input image.
No torch: this runs in packing workers.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

YUNET_SOURCE = (
    "OpenCV's model zoo, https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet "
    "(face_detection_yunet_2023mar.onnx)"
)
SCRFD_SOURCE = "insightface's model packs (det_10g.onnx in buffalo_l, det_500m.onnx in buffalo_s)"
CHOICES = ("central-score", "score", "largest", "central", "only")
DEFAULT_DETECTION_SIDE = 640  # photos are scaled down to this longest side for detection (faces keep full resolution)


class DetectorError(ValueError):
    """The detector file is missing, of the wrong kind, or cannot run."""


class DetectionFailed(RuntimeError):
    """The detector raised on one image (the photo is reported, the run goes on)."""


@dataclass(frozen=True)
class Face:
    """One detection: box (x, y, width, height) and landmarks (5, 2) in input-image pixels, score in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels (what --min-size compares)."""
        return min(self.box[2], self.box[3])

    @property
    def centre(self) -> tuple[float, float]:
        return self.box[0] + self.box[2] / 2, self.box[1] + self.box[3] / 2


@dataclass(frozen=True)
class DetectorSpec:
    """What a worker process needs to build its own detector (detectors themselves do not pickle)."""

    kind: str  # "yunet" or "scrfd"
    path: str
    min_score: float = 0.5
    detection_side: int = DEFAULT_DETECTION_SIDE
    nms_threshold: float = 0.4


def _downscale(image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """image scaled so its longest side is at most `side`, and the (x, y) factors back to the original pixels."""
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image, np.ones(2)
    factor = side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.array([width / size[0], height / size[1]])


@contextmanager
def _quiet_opencv():
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class YuNetDetector:
    """OpenCV's YuNet (cv2.FaceDetectorYN): rows [x, y, w, h, 5 x (x, y) landmarks, score]."""

    def __init__(self, spec: DetectorSpec):
        path = Path(spec.path)
        if not path.is_file():
            raise DetectorError(f"YuNet model {path} not found; get it from {YUNET_SOURCE}")
        self.spec = spec
        try:
            with _quiet_opencv():  # OpenCV 5 warns that its new graph engine ignores the (default) target
                self.net = cv2.FaceDetectorYN.create(
                    str(path), "", (320, 320), spec.min_score, spec.nms_threshold, 5000
                )
        except cv2.error as error:
            raise DetectorError(
                f"{path} is not a YuNet face detector OpenCV can load ({_first_line(error)}); get the model from "
                f"{YUNET_SOURCE}"
            ) from error
        try:  # a foreign ONNX file may load and only fail on the first image
            self.detect(np.zeros((64, 64, 3), np.uint8))
        except DetectionFailed as error:
            raise DetectorError(
                f"{path} loads but does not run as YuNet ({_first_line(error)}); get the model from {YUNET_SOURCE}"
            ) from error

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Faces in a uint8 (H, W, 3) BGR image, highest score first."""
        small, factor = _downscale(image_bgr, self.spec.detection_side)
        try:
            self.net.setInputSize((small.shape[1], small.shape[0]))
            _, rows = self.net.detect(small)
        except cv2.error as error:
            raise DetectionFailed(_first_line(error)) from error
        if rows is None:
            return []
        rows = rows.astype(np.float64)
        if rows.ndim != 2 or rows.shape[1] < 15:
            raise DetectionFailed(f"YuNet returned rows of shape {rows.shape}, expected (N, 15)")
        faces = [
            Face(tuple((row[:4].reshape(2, 2) * factor).ravel()), float(row[14]), row[4:14].reshape(5, 2) * factor)
            for row in rows
            if row[14] >= self.spec.min_score
        ]
        return sorted(faces, key=lambda face: -face.score)


class ScrfdDetector:
    """insightface's SCRFD through insightface.model_zoo (boxes x1 y1 x2 y2 score, keypoints (N, 5, 2))."""

    def __init__(self, spec: DetectorSpec):
        path = Path(spec.path)
        if path.is_dir():
            path = _scrfd_in_folder(path)
        elif not path.is_file():
            raise DetectorError(
                f"SCRFD model {path} not found; pass a det_*.onnx file or a model folder from {SCRFD_SOURCE}"
            )
        try:
            from insightface import model_zoo
        except ImportError as error:
            raise DetectorError(
                f"--scrfd needs the insightface package ({error}); pip install insightface, or use --yunet"
            ) from error
        try:
            model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime and protobuf raise their own types for a foreign file
            raise DetectorError(
                f"{path} is not an ONNX model insightface can load ({type(error).__name__}: {_first_line(error)}); "
                f"pass a SCRFD det_*.onnx from {SCRFD_SOURCE}"
            ) from error
        if getattr(model, "taskname", None) != "detection" or not getattr(model, "use_kps", False):
            what = getattr(model, "taskname", None) or "not a model insightface recognises"
            raise DetectorError(
                f"{path} is not a SCRFD face detector with landmarks (insightface routes it as: {what}); pass a "
                f"det_*.onnx from {SCRFD_SOURCE}"
            )
        self.spec = spec
        self.path = path
        shape = model.session.get_inputs()[0].shape  # a model exported at a fixed size runs only at that size
        fixed = all(isinstance(side, int) and side > 0 for side in shape[2:4])
        self.input_size = (shape[3], shape[2]) if fixed else (spec.detection_side, spec.detection_side)
        model.prepare(-1, det_thresh=spec.min_score, nms_thresh=spec.nms_threshold, input_size=self.input_size)
        self.model = model

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Faces in a uint8 (H, W, 3) BGR image, highest score first (SCRFD letterboxes to its input size)."""
        try:
            boxes, keypoints = self.model.detect(image_bgr, input_size=self.input_size)
        except Exception as error:  # onnxruntime raises its own types
            raise DetectionFailed(f"{type(error).__name__}: {_first_line(error)}") from error
        faces = []
        for (x1, y1, x2, y2, score), points in zip(boxes.tolist(), keypoints, strict=True):
            if score >= self.spec.min_score:
                faces.append(Face((x1, y1, x2 - x1, y2 - y1), float(score), np.asarray(points, np.float64)))
        return sorted(faces, key=lambda face: -face.score)


def _scrfd_in_folder(folder: Path) -> Path:
    candidates = sorted(folder.glob("det_*.onnx"))
    if len(candidates) != 1:
        found = ", ".join(path.name for path in candidates) or "none"
        raise DetectorError(
            f"model folder {folder} should hold exactly one det_*.onnx (found: {found}); pass the file itself"
        )
    return candidates[0]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def open_detector(spec: DetectorSpec) -> YuNetDetector | ScrfdDetector:
    """The detector `spec` names; a missing or foreign file raises DetectorError (one sentence, with the fix)."""
    if spec.min_score < 0 or spec.min_score > 1:
        raise DetectorError(f"--min-score {spec.min_score} must lie in [0, 1], e.g. 0.5")
    if spec.detection_side < 32:
        raise DetectorError(f"--detection-size {spec.detection_side} is too small; use at least 32, e.g. 640")
    if spec.kind == "yunet":
        return YuNetDetector(spec)
    if spec.kind == "scrfd":
        return ScrfdDetector(spec)
    raise DetectorError(f"detector kind {spec.kind!r} is unknown; use 'yunet' or 'scrfd'")


def choose_face(
    faces: list[Face], image_shape: tuple[int, ...], choose: str = "central-score", min_size: float = 0.0
) -> tuple[Face | None, list[Face]]:
    """(the chosen face or None, the faces at least `min_size` pixels) among `faces` of an image of `image_shape`.

    choose: "central-score" score x (1 - d / r), d the box centre's distance to the image centre, r half the
    diagonal (a one-subject photo's subject, even beside a sharper bystander); "score" the highest score; "largest"
    the largest box; "central" the box centre nearest the image centre; "only" the face when it is the only one
    (None when there are several).
    """
    if choose not in CHOICES:
        raise ValueError(f"--choose {choose!r} is unknown; use one of {', '.join(CHOICES)}")
    kept = [face for face in faces if face.size >= min_size]
    if not kept:
        return None, kept
    height, width = image_shape[:2]
    centre = np.array([width / 2, height / 2])
    radius = float(np.hypot(width, height)) / 2

    def distance(face: Face) -> float:
        return float(np.hypot(*(np.array(face.centre) - centre)))

    if choose == "only":
        return (kept[0] if len(kept) == 1 else None), kept
    if choose == "score":
        return max(kept, key=lambda face: face.score), kept
    if choose == "largest":
        return max(kept, key=lambda face: face.box[2] * face.box[3]), kept
    if choose == "central":
        return min(kept, key=distance), kept
    return max(kept, key=lambda face: face.score * max(0.0, 1.0 - distance(face) / radius)), kept
