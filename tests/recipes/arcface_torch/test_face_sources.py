"""read_faces: one reader for every option that takes faces (flat folder, identity tree, RecordIO, .bin)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.cli import make_bin, make_pairs
from recipes.arcface_torch.face_sources import read_faces, spread


def test_an_identity_tree_a_flat_folder_a_rec_and_a_bin_give_the_same_faces(identity_folder, identity_rec, tmp_path):
    names, tree = read_faces(identity_folder)
    assert tree.shape == (9, 112, 112, 3) and tree.dtype == np.uint8 and names[0] == "alice/0"
    expected = cv2.imread(str(identity_folder / "alice" / "0.png"))  # BGR, as OpenCV reads it
    assert np.array_equal(tree[0], expected)

    flat = tmp_path / "flat"
    flat.mkdir()
    for index, image in enumerate(tree):
        cv2.imwrite(str(flat / f"{index:02d}.png"), image)
    flat_names, from_flat = read_faces(flat)
    assert flat_names[:2] == ["00", "01"] and np.array_equal(from_flat, tree)

    _, from_rec = read_faces(identity_rec)  # packed in label order: the same order as the tree
    assert np.abs(from_rec.astype(int) - tree.astype(int)).mean() < 3  # JPEG faces are stored as they are
    _, from_rec_file = read_faces(identity_rec / "train.rec", count=3)
    assert from_rec_file.shape == (3, 112, 112, 3)

    pairs, bin_path = tmp_path / "pairs.txt", tmp_path / "val.bin"
    assert make_pairs.main([str(identity_folder), str(pairs), "--num-pairs", "6"]) == 0
    assert make_bin.main([str(pairs), str(bin_path), "--root", str(identity_folder), "--quiet"]) == 0
    bin_names, from_bin = read_faces(bin_path, count=4)
    assert from_bin.shape == (4, 112, 112, 3) and bin_names[0] == "val/0"
    assert any(np.abs(from_bin[0].astype(int) - face.astype(int)).mean() < 3 for face in tree)


def test_faces_of_another_size_are_resized_and_count_spreads(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for index in range(10):
        cv2.imwrite(str(folder / f"{index}.jpg"), np.full((96, 80, 3), 20 * index, np.uint8))
    names, faces = read_faces(folder, size=64, count=4)
    assert faces.shape == (4, 64, 64, 3) and names == ["0", "3", "6", "9"]
    assert list(spread(10, None)) == list(range(10)) and list(spread(3, 8)) == [0, 1, 2]


def test_bad_sources_are_one_sentence_each(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass a folder of aligned faces"):
        read_faces(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder, a .rec nor a .bin"):
        read_faces(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no face images and no identity sub-folders"):
        read_faces(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*a.jpg"):
        read_faces(tmp_path / "broken")
