"""A folder of photos (root/<identity>/<photo>) -> the same tree of aligned faces, a report and a landmarks file.

    summary = align_folder(photos, output, DetectorSpec("yunet", "face_detection_yunet_2023mar.onnx"),
                           AlignSettings(choose="central-score"), workers=4)

Per photo: decode (any format OpenCV reads, colour or grey), detect, choose one face (face_detection.choose_face),
warp its five landmarks onto the arcface template (face_image.align_face) and write OUTPUT/<identity>/<stem>.jpg
atomically. Every photo gets a row in the report (status aligned / fallback / no_face / several_faces / unreadable /
failed, detector score, faces found, box, landmarks, message); nothing is dropped silently. The landmarks file lists
`path x1 y1 ... x5 y5` (path relative to the photo root, points in its pixels) for every detected face, the format
pack_rec and make_bin read. A hidden state file in OUTPUT records each finished photo, so a killed run resumes where
it stopped (a photo is redone when it changed since); different settings on the same OUTPUT need --force.
No torch here: the work is decode, detect, warp and encode in worker processes.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .atomic_file import write_bytes_atomically
from .face_detection import CHOICES, DetectionFailed, DetectorSpec, choose_face, open_detector
from .face_files import IMAGE_SUFFIXES
from .face_image import align_face

STATE_NAME = ".align_faces_state.jsonl"
REPORT_NAME = "align_report.csv"
LANDMARKS_NAME = "landmarks.txt"
STATUSES = ("aligned", "fallback", "no_face", "several_faces", "unreadable", "failed")
WRITTEN = ("aligned", "fallback")  # statuses that leave a face in the output tree
FALLBACKS = ("none", "center-crop")
FORMATS = ("jpg", "png")
REPORT_FIELDS = ("path", "status", "faces", "score", "box", "landmarks", "output", "message")


@dataclass(frozen=True)
class AlignSettings:
    """Everything that decides a photo's output (a resumed run must use the same)."""

    size: int = 112
    choose: str = "central-score"
    min_size: float = 0.0
    fallback: str = "none"
    image_format: str = "jpg"
    jpeg_quality: int = 95

    def check(self) -> None:
        if self.size <= 0 or self.size % 112:
            raise ValueError(f"--size {self.size} must be a positive multiple of 112 (the arcface template), e.g. 112")
        if self.choose not in CHOICES:
            raise ValueError(f"--choose {self.choose!r} is unknown; use one of {', '.join(CHOICES)}")
        if self.min_size < 0:
            raise ValueError(f"--min-size {self.min_size} must be >= 0 pixels, e.g. 20")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"--fallback {self.fallback!r} is unknown; use one of {', '.join(FALLBACKS)}")
        if self.image_format not in FORMATS:
            raise ValueError(f"--format {self.image_format!r} is unknown; use one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Photo:
    """One input photo: `relative` (posix, to the photo root) and where its face goes."""

    relative: str
    source: Path
    output: Path


def list_photos(root: Path) -> list[str]:
    """Relative paths `identity/photo` of the images under `root`, sorted; a missing or unreadable folder raises."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist; pass a folder with one sub-folder per identity")
    try:
        identities = sorted(
            entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
        )
    except OSError as error:
        raise OSError(f"cannot read the photo folder {root} ({error.strerror}); check its permissions") from error
    if not identities:
        raise ValueError(
            f"{root} has no identity sub-folders; put each identity's photos in its own sub-folder (root/<identity>/)"
        )
    photos = []
    for identity in identities:
        folder = root / identity
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_SUFFIXES)
            )
        except OSError as error:
            raise OSError(
                f"cannot read the identity folder {folder} ({error.strerror}); check its permissions"
            ) from error
        photos.extend(f"{identity}/{name}" for name in names)
    if not photos:
        raise ValueError(f"{root} holds no photos in its identity sub-folders ({' '.join(IMAGE_SUFFIXES)})")
    return photos


def plan_photos(root: Path, output: Path, relatives: Iterable[str], image_format: str) -> list[Photo]:
    """Photo jobs with output paths `<identity>/<stem>.<format>`; two photos that would share one output raise."""
    photos, taken = [], {}
    for relative in relatives:
        target = str(Path(relative).with_suffix(f".{image_format}").as_posix())
        if target in taken:
            raise ValueError(
                f"photos {taken[target]} and {relative} would both be written as {target}; rename one of them"
            )
        taken[target] = relative
        photos.append(Photo(relative, root / relative, output / target))
    return photos


def _source_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _encode(image_bgr: np.ndarray, settings: AlignSettings) -> bytes:
    if settings.image_format == "png":
        ok, data = cv2.imencode(".png", image_bgr)
    else:
        ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image_bgr.shape} face as {settings.image_format}")
    return data.tobytes()


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of `image` (side = its shorter side) resized to size x size."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def align_photo(photo: Photo, detector, settings: AlignSettings) -> dict:
    """Detect, choose, align and write one photo; returns its report row (never raises for a bad photo)."""
    row = {"path": photo.relative, "status": "", "faces": 0, "score": None, "box": None, "landmarks": None}
    row.update(output=None, message="")
    try:
        row["stamp"] = _source_stamp(photo.source)
        data = photo.source.read_bytes()
    except OSError as error:
        return row | {"status": "unreadable", "message": f"cannot read the file ({error.strerror})"}
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        return row | {"status": "unreadable", "message": f"not an image OpenCV can decode ({len(data)} bytes)"}
    try:
        faces = detector.detect(image)
    except DetectionFailed as error:
        return row | {
            "status": "failed",
            "message": f"the detector failed on this {image.shape[1]}x{image.shape[0]} image: {error}",
        }
    chosen, kept = choose_face(faces, image.shape, settings.choose, settings.min_size)
    row["faces"] = len(kept)
    if chosen is None:
        if kept:
            return row | {"status": "several_faces", "message": f"{len(kept)} faces and --choose only"}
        message = "no face found"
        if faces:
            message = f"{len(faces)} face(s) smaller than --min-size {settings.min_size:g} px"
        if settings.fallback == "none":
            return row | {"status": "no_face", "message": message}
        face = centre_crop(image, settings.size)
        row.update(status="fallback", message=f"{message}; kept the centre crop")
    else:
        face = align_face(image, chosen.landmarks, settings.size)
        row.update(
            status="aligned",
            score=round(chosen.score, 4),
            box=[round(value, 2) for value in chosen.box],
            landmarks=[round(float(value), 2) for value in chosen.landmarks.ravel()],
        )
        if len(kept) > 1:
            row["message"] = f"chose 1 of {len(kept)} faces by --choose {settings.choose}"
    # renamed into place, not fsynced one by one (that costs more than the alignment); a full disk stops the run
    write_bytes_atomically(photo.output, _encode(face, settings), durable=False)
    row["output"] = Path(photo.relative).parent.joinpath(photo.output.name).as_posix()
    return row


_WORKER: dict = {}


def _start_worker(spec: DetectorSpec, settings: AlignSettings) -> None:
    cv2.setNumThreads(1)  # one core per process: the pool is the parallelism
    _WORKER.update(detector=open_detector(spec), settings=settings)


def _work(photo: Photo) -> dict:
    return align_photo(photo, _WORKER["detector"], _WORKER["settings"])


def _settings_record(spec: DetectorSpec, settings: AlignSettings) -> dict:
    record = {"settings": asdict(settings) | asdict(spec)}
    record["settings"]["path"] = str(Path(spec.path).resolve())
    return record


def read_state(path: Path) -> tuple[dict | None, dict[str, dict]]:
    """(settings record, {relative path: row}) from a state file; a torn last line (a killed run) is ignored."""
    if not path.is_file():
        return None, {}
    settings, rows = None, {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "settings" in record:
            settings = record
        elif "path" in record:
            rows[record["path"]] = record
    return settings, rows


def _write_state(path: Path, header: dict, rows: list[dict]) -> None:
    lines = [json.dumps(header)] + [json.dumps(row) for row in rows]
    write_bytes_atomically(path, ("\n".join(lines) + "\n").encode())


def _changed_settings(old: dict, new: dict) -> str:
    changed = [
        f"{key} {old['settings'].get(key)!r} -> {value!r}"
        for key, value in new["settings"].items()
        if old["settings"].get(key) != value
    ]
    return ", ".join(changed)


def _is_done(row: dict | None, photo: Photo) -> bool:
    if row is None:
        return False
    try:
        if row.get("stamp") != _source_stamp(photo.source):
            return False
    except OSError:
        return False
    try:  # an empty face file is what a power cut can leave of an unsynced write: redo it
        return row["status"] not in WRITTEN or photo.output.stat().st_size > 0
    except OSError:
        return False


def format_report(rows: list[dict], suffix: str) -> bytes:
    """The report as CSV (one row per photo; box and landmarks space-separated) or JSON (a list of objects)."""
    public = [{key: row.get(key) for key in REPORT_FIELDS} for row in rows]
    if suffix == ".json":
        return (json.dumps(public, indent=1) + "\n").encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in public:
        flat = dict(row)
        for key in ("box", "landmarks"):
            flat[key] = " ".join(f"{value:g}" for value in row[key]) if row[key] else ""
        flat["score"] = "" if row["score"] is None else f"{row['score']:g}"
        flat["output"] = row["output"] or ""
        writer.writerow(flat)
    return buffer.getvalue().encode()


def format_landmarks(rows: list[dict]) -> bytes:
    """`path x1 y1 ... x5 y5` for every detected face (paths relative to the photo root), as face_files reads."""
    lines = ["# path x1 y1 ... x5 y5 (left eye, right eye, nose, mouth corners), written by unpg-align-faces"]
    for row in rows:
        if row["status"] == "aligned":
            if " " in row["path"]:
                continue  # the landmarks format cannot hold a path with spaces; the aligned face is still written
            lines.append(row["path"] + " " + " ".join(f"{value:g}" for value in row["landmarks"]))
    return ("\n".join(lines) + "\n").encode()


def align_folder(
    photos_root: Path,
    output: Path,
    spec: DetectorSpec,
    settings: AlignSettings = AlignSettings(),
    workers: int = 1,
    force: bool = False,
    progress: Callable[[int], object] | None = None,
    report: Path | None = None,
    landmarks: Path | None = None,
) -> dict:
    """Align every photo under `photos_root` into `output`; return the summary (counts per status, kept, timing).

    `progress(total)` returns an object with .update(n) and .close() (a tqdm), or None for silence. Photos already
    done by an earlier run with the same settings are kept unless `force`.
    """
    settings.check()
    photos_root, output = Path(photos_root), Path(output)
    report = Path(report) if report else output / REPORT_NAME
    landmarks = Path(landmarks) if landmarks else output / LANDMARKS_NAME
    if report.suffix not in (".csv", ".json"):
        raise ValueError(f"report {report} must end in .csv or .json")
    if workers < 1:
        raise ValueError(f"--workers {workers} must be >= 1")
    if photos_root.resolve() == output.resolve() or photos_root.resolve() in output.resolve().parents:
        raise ValueError(f"output {output} lies inside the photo folder {photos_root}; choose a folder outside it")
    relatives = list_photos(photos_root)
    photos = plan_photos(photos_root, output, relatives, settings.image_format)
    open_detector(spec)  # a wrong detector file fails here, once, before any worker starts
    output.mkdir(parents=True, exist_ok=True)
    state_path = output / STATE_NAME
    header = _settings_record(spec, settings)
    old_header, old_rows = (None, {}) if force else read_state(state_path)
    if old_header is not None and old_header != header:
        raise ValueError(
            f"{output} was aligned with other settings ({_changed_settings(old_header, header)}); pass --force to "
            f"redo every photo, or choose another output folder"
        )
    kept = {
        photo.relative: old_rows[photo.relative] for photo in photos if _is_done(old_rows.get(photo.relative), photo)
    }
    todo = [photo for photo in photos if photo.relative not in kept]
    rows: dict[str, dict] = dict(kept)
    start = time.perf_counter()
    bar = progress(len(todo)) if progress else None
    _write_state(state_path, header, list(kept.values()))  # drops rows of photos gone or changed, and a torn line
    with open(state_path, "a") as state:
        results = _run(todo, spec, settings, workers)
        try:
            for row in results:
                rows[row["path"]] = row
                state.write(json.dumps(row) + "\n")
                state.flush()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    elapsed = time.perf_counter() - start
    if force:
        for photo in photos:  # a face from an earlier run must not outlive a photo that now yields none
            if rows[photo.relative]["status"] not in WRITTEN:
                photo.output.unlink(missing_ok=True)
    ordered = [rows[photo.relative] for photo in photos]
    write_bytes_atomically(report, format_report(ordered, report.suffix))
    write_bytes_atomically(landmarks, format_landmarks(ordered))
    _write_state(state_path, header, ordered)
    counts = Counter(row["status"] for row in ordered)
    done = len(todo)
    return {
        "photos": len(photos),
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        "chosen_among_several": sum(1 for row in ordered if row["status"] == "aligned" and row["faces"] > 1),
        "kept": len(kept),
        "processed": done,
        "seconds": round(elapsed, 3),
        "images_per_second": round(done / elapsed, 2) if done and elapsed > 0 else None,
        "workers": workers,
        "output": str(output),
        "report": str(report),
        "landmarks": str(landmarks),
    }


def _run(todo: list[Photo], spec: DetectorSpec, settings: AlignSettings, workers: int):
    """Rows of `todo` as they finish: in this process for one worker, else a spawn pool (no forked OpenCV state)."""
    if not todo:
        return
    if workers == 1:
        detector = open_detector(spec)
        for photo in todo:
            yield align_photo(photo, detector, settings)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(todo)), initializer=_start_worker, initargs=(spec, settings)) as pool:
        try:
            yield from pool.imap_unordered(_work, todo, chunksize=max(1, min(16, len(todo) // (workers * 8))))
        except BaseException:
            pool.terminate()
            raise
