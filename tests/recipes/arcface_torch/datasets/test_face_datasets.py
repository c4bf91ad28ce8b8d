"""Real-data path: RecordIOFaces and ImageFolderFaces (folders from tests/support/face_folders.py)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recipes.arcface_torch.datasets.image_folder_faces import ImageFolderFaces
from recipes.arcface_torch.datasets.recordio import IndexedRecordReader, IndexedRecordWriter, pack_record, unpack_record
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from tests.support import FIXTURES
from tests.support.face_folders import encode_face, face

FIXTURE = FIXTURES / "mxnet"


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return np.round(image.numpy().transpose(1, 2, 0) * 127.5 + 127.5).astype(np.uint8)


# ---------------------------------------------------------------- datasets


def test_image_folder_faces_items(identity_folder):
    ds = ImageFolderFaces(identity_folder, flip=False)
    assert ds.class_names == ["alice", "bob", "carol"] and ds.num_classes == 3 and len(ds) == 9
    image, label = ds[4]
    assert image.dtype == torch.float32 and image.shape == (3, 112, 112)
    assert label.dtype == torch.int64 and label.ndim == 0 and int(label) == 1
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    np.testing.assert_array_equal(_to_uint8(ds[0][0]), face(10))  # alice/0.png is lossless


def test_pack_rec_layout_matches_insightface(identity_rec):
    assert (identity_rec / "property").read_text() == "3,112,112\n"
    with IndexedRecordReader(identity_rec / "train.idx", identity_rec / "train.rec") as reader:
        assert list(reader.keys) == list(range(13))
        header, _ = unpack_record(reader.read(0))
        assert header.flag == 2 and list(header.label) == [10.0, 13.0]
        identities = [list(unpack_record(reader.read(k))[0].label) for k in (10, 11, 12)]
        assert identities == [[1.0, 4.0], [4.0, 7.0], [7.0, 10.0]]
        first, _ = unpack_record(reader.read(5))
        assert (first.flag, first.label, first.id) == (0, 1.0, 5)


def test_recordio_faces_equals_image_folder(identity_rec, identity_folder):
    rec, folder = RecordIOFaces(identity_rec, flip=False), ImageFolderFaces(identity_folder, flip=False)
    assert len(rec) == len(folder) == 9 and rec.num_classes == 3
    for i in range(len(rec)):
        (a, la), (b, lb) = rec[i], folder[i]
        assert int(la) == int(lb) and la.dtype == torch.int64 and la.ndim == 0
        assert np.array_equal(a.numpy(), b.numpy())


def test_flip_is_deterministic_and_mirrors(identity_rec):
    plain, flipping = RecordIOFaces(identity_rec, flip=False), RecordIOFaces(identity_rec, flip=True, seed=3)
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
            writer.write(key, pack_record(float(label), encode_face(face(key), ".png")))
    (tmp_path / "property").write_text("3,112,112")
    ds = RecordIOFaces(tmp_path, flip=False)
    assert [int(ds[i][1]) for i in range(3)] == [0, 1, 2]
    np.testing.assert_array_equal(_to_uint8(ds[1][0]), face(2))


def test_dataloader_workers_after_parent_read(identity_rec):
    ds = RecordIOFaces(identity_rec, flip=True)
    ds[0]  # the parent has opened the file before the workers fork
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    labels = torch.cat([label for _, label in loader]).tolist()
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]


# ---------------------------------------------------------------- dataset errors


def test_missing_property_names_folder(identity_rec, tmp_path):
    for name in ("train.rec", "train.idx"):
        (tmp_path / name).write_bytes((identity_rec / name).read_bytes())
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
        writer.write(1, pack_record(0.0, encode_face(face(1), ".png")))
        writer.write(2, pack_record(1.0, b"definitely not a jpeg"))
        writer.write(3, pack_record(5.0, encode_face(face(3), ".png")))
    (tmp_path / "property").write_text("2,112,112\n")
    ds = RecordIOFaces(tmp_path)
    assert len(ds) == 2 and int(ds[0][1]) == 0
    with pytest.raises(ValueError, match=r"train\.rec key 2: could not decode the image"):
        ds[1]
    (tmp_path / "property").write_text("2,112,112\n")
    with IndexedRecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as writer:
        writer.write(0, pack_record(5.0, encode_face(face(1), ".png")))
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
        writer.write(1, pack_record(0.0, encode_face(face(1), ".png")))
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
