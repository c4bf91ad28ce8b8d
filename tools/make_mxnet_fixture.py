"""Write the reference RecordIO files in tests/fixtures/mxnet/ with the real mxnet 1.9.1.

mxnet cannot live in the project environment (it breaks on numpy >= 1.24), so this tool builds its own
virtual environment under /tmp (Python 3.11, mxnet==1.9.1, numpy<1.24, opencv-python-headless<4.12),
then runs itself inside it to write train.rec / train.idx / property and expected.json, which lists every
record (key, offset, payload hex, header, decoded-image digest) as mxnet reads it back.

    python tools/make_mxnet_fixture.py                      # -> tests/fixtures/mxnet/
    python tools/make_mxnet_fixture.py --output /tmp/fx --venv /tmp/mxnet-venv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "fixtures" / "mxnet"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "mxnet-fixture-venv"
PACKAGES = ["mxnet==1.9.1", "numpy<1.24", "opencv-python-headless<4.12"]
MAGIC = bytes.fromhex("0a23d7ce")  # 0xCED7230A little-endian


def _face(seed: int):
    """A simple 112x112 RGB picture (a disc on banded colour, ~0.5 KB as PNG) that differs per seed."""
    import numpy as np

    yy, xx = np.mgrid[0:112, 0:112]
    image = np.zeros((112, 112, 3), np.uint8)
    image[..., 0] = 60 + 40 * seed
    image[..., 1] = (yy // 8) * 16
    image[..., 2] = 200
    image[(xx - 56) ** 2 + (yy - 60 + 4 * seed) ** 2 < 30**2] = (220, 180, 150)
    return image


def _write_inside(output: Path) -> None:
    """Runs in the mxnet environment: write the records with MXIndexedRecordIO and describe them."""
    import cv2
    import mxnet as mx
    import numpy as np

    work = Path(tempfile.mkdtemp(dir=output.parent, prefix=".mxnet-fixture-"))
    rec_path, idx_path = work / "train.rec", work / "train.idx"
    IRHeader = mx.recordio.IRHeader

    faces = [_face(seed) for seed in range(3)]
    png0 = cv2.imencode(".png", cv2.cvtColor(faces[0], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])[
        1
    ].tobytes()
    png2 = cv2.imencode(".png", cv2.cvtColor(faces[2], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])[
        1
    ].tobytes()
    rng = np.random.RandomState(7)
    noise = bytearray(rng.randint(0, 256, size=1000, dtype=np.uint8).tobytes())
    noise[400:404] = MAGIC  # aligned: splits the record
    noise[601:605] = MAGIC  # unaligned: stays inside a chunk

    # (key, payload, description); keys 1..3 are images, [1, 4) per the header record, 4..5 identities
    records = [
        (
            0,
            mx.recordio.pack(IRHeader(0, [4.0, 6.0], 0, 0), b""),
            "header record: flag 2, label (first identity key, end)",
        ),
        (1, mx.recordio.pack(IRHeader(0, 0.0, 1, 0), png0), "image: PNG, label 0"),
        (
            2,
            mx.recordio.pack_img(
                IRHeader(0, 1.0, 2, 0), cv2.cvtColor(faces[1], cv2.COLOR_RGB2BGR), quality=50, img_fmt=".jpg"
            ),
            "image: JPEG via pack_img, label 1",
        ),
        (3, mx.recordio.pack(IRHeader(0, [1.0, 0.5], 3, 0), png2), "image: PNG, label array (1, 0.5) -> class 1"),
        (4, mx.recordio.pack(IRHeader(0, [1.0, 2.0], 4, 0), b""), "identity 0: image keys [1, 2)"),
        (5, mx.recordio.pack(IRHeader(0, [2.0, 4.0], 5, 0), b""), "identity 1: image keys [2, 4)"),
        (10, b"", "empty payload"),
        (11, MAGIC, "payload is exactly the magic word"),
        (12, b"ab" + MAGIC + b"cdefgh", "magic at unaligned offset 2 (not split)"),
        (
            13,
            MAGIC + b"abcd" + MAGIC + MAGIC + b"efg\x00" + MAGIC + b"z",
            "magic at aligned offsets 0, 8, 12, 20 (empty chunks), odd length",
        ),
        (14, bytes(noise), "1000 random bytes, magic at aligned 400 and unaligned 601"),
        (15, b"xyz", "three bytes, padded"),
    ]
    writer = mx.recordio.MXIndexedRecordIO(str(idx_path), str(rec_path), "w")
    for key, payload, _ in records:
        writer.write_idx(key, payload)
    writer.close()

    reader = mx.recordio.MXIndexedRecordIO(str(idx_path), str(rec_path), "r")
    described = []
    for key, payload, text in records:
        read_back = reader.read_idx(key)
        assert read_back == payload, f"mxnet read back a different payload for key {key}"
        item = {"key": key, "offset": reader.idx[key], "description": text, "payload_hex": payload.hex()}
        if key <= 5:
            header, body = mx.recordio.unpack(payload)
            label = header.label
            item["header"] = {
                "flag": int(header.flag),
                "label": [float(v) for v in label] if header.flag > 0 else float(label),
                "id": int(header.id),
                "id2": int(header.id2),
            }
            item["body_len"] = len(body)
            if body:
                decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                item["image"] = {
                    "format": "jpg" if body[:2] == b"\xff\xd8" else "png",
                    "shape": list(decoded.shape),
                    "rgb_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
                    "rgb_mean": float(decoded.mean()),
                }
        described.append(item)
    reader.close()

    (work / "property").write_text("2,112,112\n")
    expected = {
        "written_by": f"mxnet {mx.__version__} (mxnet.recordio.MXIndexedRecordIO), "
        f"numpy {np.__version__}, opencv {cv2.__version__}",
        "rec_sha256": hashlib.sha256(rec_path.read_bytes()).hexdigest(),
        "idx_sha256": hashlib.sha256(idx_path.read_bytes()).hexdigest(),
        "num_classes": 2,
        "image_keys": [1, 2, 3],
        "image_labels": [0, 1, 1],
        "records": described,
    }
    (work / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    output.mkdir(parents=True, exist_ok=True)
    for name in ("train.rec", "train.idx", "property", "expected.json"):
        os.replace(work / name, output / name)
    shutil.rmtree(work, ignore_errors=True)


def _ensure_venv(venv: Path, python: str) -> Path:
    venv_python = venv / "bin" / "python"
    probe = [str(venv_python), "-c", "import mxnet, cv2"]
    if venv_python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return venv_python
    print(f"building {venv} with {', '.join(PACKAGES)} (a few minutes)", file=sys.stderr)
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv_python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return venv_python


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the fixture files")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="where to build the mxnet environment")
    parser.add_argument("--python", default=shutil.which("python3.11") or "python3", help="interpreter for the venv")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    output = args.output.resolve()
    if args.inside:
        _write_inside(output)
        return 0
    try:
        venv_python = _ensure_venv(args.venv, args.python)
    except (OSError, subprocess.CalledProcessError) as err:
        print(
            f"error: could not build the mxnet environment in {args.venv} ({err}); check that PyPI is reachable "
            f"and that {args.python} exists, or pass --python",
            file=sys.stderr,
        )
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(venv_python), str(Path(__file__).resolve()), "--inside", "--output", str(output)])
    if result.returncode != 0:
        print(
            f"error: writing the fixture with mxnet failed (exit {result.returncode}); see the messages above",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {output}/train.rec, train.idx, property, expected.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
