"""Insightface 2.x model packages (manifest V2) holding one recognition model.

A package is a folder with `manifest.json` and the ONNX file:

    {"manifest_version": 2, "model_id": "r50_unpg", "display_name": "r50_unpg", "license": "MODEL.LICENSE",
     "tasks": {"recognition": {"file": "r50_unpg.onnx", "sha256": "<64 hex>",
                               "preprocessing": {"mean": 127.5, "std": 127.5},
                               "preprocessing_version": "insightface-arcface-1",
                               "input_size": [112, 112], "embedding_dimension": 512}}}

`insightface.model_zoo.get_model(folder, model_task="recognition")` loads it and uses the manifest's
mean/std instead of guessing from node names. `license` must name a MODEL.LICENSE file; only
InsightFace can sign one, so none is written and insightface applies its default terms.

    write_package(Path("r50_unpg.onnx"), Path("packages/r50_unpg"), model_id="r50_unpg", embedding_size=512)
    package = read_package(Path("packages/r50_unpg"))   # .onnx_path, .mean, .std, .model_id
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic_file import publish_folder, staging_folder

MANIFEST = "manifest.json"
LICENSE_FILE = "MODEL.LICENSE"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PackageError(ValueError):
    """A model package cannot be written or read."""


@dataclass
class PackageInfo:
    """The recognition task of a manifest V2 package."""

    folder: Path
    model_id: str
    onnx_path: Path
    mean: float | None  # None when preprocessing is "embedded" (the graph normalises)
    std: float | None


def is_package(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_id_from(text: str) -> str:
    """A valid model_id made from `text` (characters outside [A-Za-z0-9._-] become '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")[:128]
    return cleaned or "recognition_model"


def write_package(
    onnx_path: Path,
    folder: Path,
    *,
    model_id: str,
    embedding_size: int,
    mean: float = 127.5,
    std: float = 127.5,
    input_size: int = 112,
    force: bool = False,
) -> PackageInfo:
    """Write `folder` as a manifest V2 package around a copy of `onnx_path`; atomic, refuses to overwrite."""
    folder = Path(folder)
    if not _MODEL_ID.fullmatch(model_id):
        raise PackageError(
            f"model id {model_id!r} is not valid; use 1-128 letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit"
        )
    if folder.exists() and not force:
        raise PackageError(f"package folder {folder} already exists; pass --force to replace it")
    if folder.exists() and not folder.is_dir():
        raise PackageError(f"package path {folder} is a file; pass a folder path")
    staging = staging_folder(folder)
    try:
        file_name = f"{model_id}.onnx"
        shutil.copyfile(onnx_path, staging / file_name)
        manifest = {
            "manifest_version": 2,
            "model_id": model_id,
            "display_name": model_id,
            "license": LICENSE_FILE,
            "tasks": {
                "recognition": {
                    "file": file_name,
                    "sha256": sha256_of(staging / file_name),
                    "preprocessing": {"mean": float(mean), "std": float(std)},
                    "preprocessing_version": "insightface-arcface-1",
                    "input_size": [int(input_size), int(input_size)],
                    "embedding_dimension": int(embedding_size),
                }
            },
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        read_package(staging)  # insightface's own parser must accept it before it is published
        publish_folder(staging, folder, replace=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_package(folder)


def read_package(folder: Path) -> PackageInfo:
    """Parse and verify (sha256 included) a package's recognition task with insightface's own code."""
    from insightface.model_zoo.package_manifest import load_model_package, verify_model_artifact

    folder = Path(folder)
    try:
        package = load_model_package(folder)
    except (OSError, ValueError, TypeError) as error:
        raise PackageError(
            f"insightface rejects model package {folder} ({error}); fix {folder / MANIFEST} or re-create the package"
        ) from error
    if "recognition" not in package.tasks:
        raise PackageError(
            f"package {folder} has no recognition task (it has: "
            f"{', '.join(package.tasks) or 'none'}); add tasks.recognition to {MANIFEST}"
        )
    descriptor = package.task("recognition")
    try:
        onnx_path = verify_model_artifact(descriptor)
    except (OSError, ValueError, RuntimeError) as error:
        raise PackageError(
            f"package {folder} fails insightface's file check ({error}); "
            f"re-create the package from the .onnx it was made from"
        ) from error
    preprocessing = descriptor.metadata["preprocessing"]
    if isinstance(preprocessing, str):
        return PackageInfo(folder, package.model_id, Path(onnx_path), None, None)
    return PackageInfo(
        folder, package.model_id, Path(onnx_path), float(preprocessing["mean"]), float(preprocessing["std"])
    )
