"""Real-data path: RecordIOFaces, ImageFolderFaces, and the pack_rec / inspect_rec / make_bin tools."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recipes.arcface_torch.datasets.image_folder_faces import ImageFolderFaces
from recipes.arcface_torch.datasets.recordio import IndexedRecordReader, IndexedRecordWriter, pack_record, unpack_record
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from tests.support import FIXTURES
from tools import inspect_rec, make_bin, pack_rec

FIXTURE = FIXTURES / "mxnet"
IDENTITIES = ["bob", "alice", "carol"]  # sorted: alice=0, bob=1, carol=2


def _face(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(base)


def _encode(image_rgb: np.ndarray, suffix: str) -> bytes:
    return cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i, name in enumerate(IDENTITIES):
        (root / name).mkdir()
        for j in range(3):
            suffix = ".png" if j == 0 else ".jpg"
            (root / name / f"{j}{suffix}").write_bytes(_encode(_face(10 * i + j), suffix))
    (root / "alice" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def packed(image_folder, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("rec")
    assert pack_rec.main([str(image_folder), str(output), "--quiet"]) == 0
    return output


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return np.round(image.numpy().transpose(1, 2, 0) * 127.5 + 127.5).astype(np.uint8)


# ---------------------------------------------------------------- datasets


def test_image_folder_faces_items(image_folder):
    ds = ImageFolderFaces(image_folder, flip=False)
    assert ds.class_names == ["alice", "bob", "carol"] and ds.num_classes == 3 and len(ds) == 9
    image, label = ds[4]
    assert image.dtype == torch.float32 and image.shape == (3, 112, 112)
    assert label.dtype == torch.int64 and label.ndim == 0 and int(label) == 1
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    np.testing.assert_array_equal(_to_uint8(ds[0][0]), _face(10))  # alice/0.png is lossless


def test_pack_rec_layout_matches_insightface(packed):
    assert (packed / "property").read_text() == "3,112,112\n"
    with IndexedRecordReader(packed / "train.idx", packed / "train.rec") as reader:
        assert list(reader.keys) == list(range(13))
        header, _ = unpack_record(reader.read(0))
        assert header.flag == 2 and list(header.label) == [10.0, 13.0]
        identities = [list(unpack_record(reader.read(k))[0].label) for k in (10, 11, 12)]
        assert identities == [[1.0, 4.0], [4.0, 7.0], [7.0, 10.0]]
        first, _ = unpack_record(reader.read(5))
        assert (first.flag, first.label, first.id) == (0, 1.0, 5)


def test_recordio_faces_equals_image_folder(packed, image_folder):
    rec, folder = RecordIOFaces(packed, flip=False), ImageFolderFaces(image_folder, flip=False)
    assert len(rec) == len(folder) == 9 and rec.num_classes == 3
    for i in range(len(rec)):
        (a, la), (b, lb) = rec[i], folder[i]
        assert int(la) == int(lb) and la.dtype == torch.int64 and la.ndim == 0
        assert np.array_equal(a.numpy(), b.numpy())


def test_flip_is_deterministic_and_mirrors(packed):
    plain, flipping = RecordIOFaces(packed, flip=False), RecordIOFaces(packed, flip=True, seed=3)
    originals = [plain[i][0].numpy() for i in range(len(plain))]
    per_epoch = []
    for epoch in range(4):
        flipping.set_epoch(epoch)
        decisions = []
        for i, original in enumerate(originals):
            image = flipping[i][0].numpy()
            assert np.array_equal(image, flipping[i][0].numpy())
            mirrored = np.array_equal(image, original[:, :, ::-1])
            assert mirrored or np.array_equal(image, original)
            decisions.append(mirrored)
        per_epoch.append(decisions)
    assert any(any(d) for d in per_epoch) and not all(all(d) for d in per_epoch)
    assert len({tuple(d) for d in per_epoch}) > 1  # the epoch changes the draw


def test_recordio_faces_reads_mxnet_fixture():
    expected = json.loads((FIXTURE / "expected.json").read_text())
    ds = RecordIOFaces(FIXTURE, flip=False)
    assert len(ds) == 3 and ds.num_classes == expected["num_classes"]  # identity and raw records ignored
    by_key = {r["key"]: r for r in expected["records"]}
    for index, (key, label) in enumerate(zip(expected["image_keys"], expected["image_labels"], strict=False)):
        image, got = ds[index]
        assert int(got) == label
        want = by_key[key]["image"]
        rgb = _to_uint8(image)
        if want["format"] == "png":
            assert hashlib.sha256(rgb.tobytes()).hexdigest() == want["rgb_sha256"]
        else:
            assert abs(float(rgb.mean()) - want["rgb_mean"]) < 1.0


def test_recordio_faces_without_header_uses_idx_order(tmp_path):
    keys = [7, 2, 5]
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as writer:
        for label, key in enumerate(keys):
            writer.write(key, pack_record(float(label), _encode(_face(key), ".png")))
    (tmp_path / "property").write_text("3,112,112")
    ds = RecordIOFaces(tmp_path, flip=False)
    assert [int(ds[i][1]) for i in range(3)] == [0, 1, 2]
    np.testing.assert_array_equal(_to_uint8(ds[1][0]), _face(2))


def test_dataloader_workers_after_parent_read(packed):
    ds = RecordIOFaces(packed, flip=True)
    ds[0]  # the parent has opened the file before the workers fork
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    labels = torch.cat([label for _, label in loader]).tolist()
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]


# ---------------------------------------------------------------- dataset errors


def test_missing_property_names_folder(packed, tmp_path):
    for name in ("train.rec", "train.idx"):
        (tmp_path / name).write_bytes((packed / name).read_bytes())
    with pytest.raises(
        FileNotFoundError, match=r"has no `property` file; create it with one line 'num_classes,112,112'"
    ):
        RecordIOFaces(tmp_path)
    (tmp_path / "property").write_text("lots,112")
    with pytest.raises(ValueError, match=r"property holds 'lots,112', expected one line"):
        RecordIOFaces(tmp_path)


def test_undecodable_image_names_file_and_key(tmp_path):
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as writer:
        writer.write(0, pack_record([3.0, 4.0]))
        writer.write(1, pack_record(0.0, _encode(_face(1), ".png")))
        writer.write(2, pack_record(1.0, b"definitely not a jpeg"))
        writer.write(3, pack_record(5.0, _encode(_face(3), ".png")))
    (tmp_path / "property").write_text("2,112,112\n")
    ds = RecordIOFaces(tmp_path)
    assert len(ds) == 2 and int(ds[0][1]) == 0
    with pytest.raises(ValueError, match=r"train\.rec key 2: could not decode the image"):
        ds[1]
    (tmp_path / "property").write_text("2,112,112\n")
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as writer:
        writer.write(0, pack_record(5.0, _encode(_face(1), ".png")))
    with pytest.raises(ValueError, match=r"key 0: label 5 is outside \[0, 2\)"):
        RecordIOFaces(tmp_path)[0]


def test_empty_record_folder(tmp_path):
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec"):
        pass
    (tmp_path / "property").write_text("1,112,112\n")
    with pytest.raises(ValueError, match=r"train\.idx lists no image records"):
        RecordIOFaces(tmp_path)


def test_header_promising_missing_keys(tmp_path):
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as writer:
        writer.write(0, pack_record([5.0, 6.0]))
        writer.write(1, pack_record(0.0, _encode(_face(1), ".png")))
    (tmp_path / "property").write_text("1,112,112\n")
    with pytest.raises(ValueError, match=r"images are keys \[1, 5\) but key 2 is not in the index"):
        RecordIOFaces(tmp_path)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="has no identity sub-folders"):
        ImageFolderFaces(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match=r"identity folder .*a holds no images"):
        ImageFolderFaces(tmp_path)
    cv2.imwrite(str(tmp_path / "a" / "big.png"), np.zeros((64, 80, 3), np.uint8))
    with pytest.raises(ValueError, match=r"big\.png: image is 80x64, expected 112x112"):
        ImageFolderFaces(tmp_path)[0]


# ---------------------------------------------------------------- tools


def test_pack_rec_refuses_to_overwrite(image_folder, packed, capsys):
    assert pack_rec.main([str(image_folder), str(packed), "--quiet"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert pack_rec.main([str(image_folder), str(packed), "--quiet", "--overwrite"]) == 0


def test_pack_rec_bad_image_leaves_nothing(tmp_path, capsys):
    (tmp_path / "in" / "x").mkdir(parents=True)
    (tmp_path / "in" / "x" / "0.jpg").write_bytes(b"broken")
    assert pack_rec.main([str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 1
    assert "0.jpg: could not decode the image" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_inspect_rec_exit_codes(packed, tmp_path, capsys):
    assert inspect_rec.main([str(packed), "--quiet", "--full"]) == 0
    out = capsys.readouterr().out
    assert "13/13 land on a record start" in out and "3 distinct labels over 9 decoded images" in out
    assert inspect_rec.main([str(FIXTURE), "--quiet"]) == 0
    capsys.readouterr()

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("train.rec", "property"):
        (broken / name).write_bytes((packed / name).read_bytes())
    lines = (packed / "train.idx").read_text().splitlines()
    key, offset = lines[3].split("\t")
    lines[3] = f"{key}\t{int(offset) + 4}"
    (broken / "train.idx").write_text("\n".join(lines) + "\n")
    assert inspect_rec.main([str(broken), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "12/13 land on a record start" in captured.out
    assert "key 3: offset" in captured.err and "does not hold the magic word" in captured.err

    (broken / "train.idx").write_bytes((packed / "train.idx").read_bytes())
    (broken / "property").unlink()
    assert inspect_rec.main([str(broken), "--quiet"]) == 1
    assert "has no `property` file" in capsys.readouterr().err
    assert inspect_rec.main([str(tmp_path / "nowhere")]) == 1


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def test_make_bin_loads_with_restricted_unpickler(image_folder, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# comment\nalice/0.png alice/1.jpg 1\n\nalice/0.png bob/2.jpg 0\n")
    assert make_bin.main([str(pairs), str(tmp_path / "val.bin"), "--root", str(image_folder), "--quiet"]) == 0
    bins, issame = _NoGlobals(io.BytesIO((tmp_path / "val.bin").read_bytes())).load()
    assert issame == [True, False] and all(type(s) is bool for s in issame)
    assert len(bins) == 4 and all(type(b) is bytes for b in bins)
    assert bins[0] == (image_folder / "alice" / "0.png").read_bytes()
    assert bins[3] == (image_folder / "bob" / "2.jpg").read_bytes()


def test_make_bin_errors_name_the_line(image_folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("alice/0.png alice/1.jpg 1\nalice/0.png dave/9.jpg 0\n")
    out = tmp_path / "val.bin"
    assert make_bin.main([str(pairs), str(out), "--root", str(image_folder), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pairs.txt line 2: image" in err and "dave/9.jpg does not exist" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [pairs]
    pairs.write_text("alice/0.png alice/1.jpg maybe\n")
    assert make_bin.main([str(pairs), str(out), "--root", str(image_folder), "--quiet"]) == 1
    assert "line 1: 'alice/0.png alice/1.jpg maybe' is not 'path1 path2 0|1'" in capsys.readouterr().err
