"""make_bin: real-world images (formats, --resize, --landmarks, each distinct image read once); misuse: an existing
output is kept unless --force, a full disk is one line, leftovers are cleaned."""

import errno
import io
import os
import pickle
import time

import cv2
import numpy as np
import pytest

from recipes.arcface_torch import atomic_file
from recipes.arcface_torch.cli import make_bin
from recipes.arcface_torch.evaluation import bin_file
from recipes.arcface_torch.evaluation.bin_file import load_bin
from recipes.arcface_torch.face_image import ARCFACE_DST


@pytest.fixture()
def pairs(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        image = np.random.default_rng(len(name)).integers(0, 255, (112, 112, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / name), image)
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg b.jpg 0\na.jpg a.jpg 1\n")
    return path


def test_existing_output_is_refused_without_force(pairs, tmp_path, capsys):
    output = tmp_path / "val.bin"
    output.write_bytes(b"someone's verification set")
    assert make_bin.main([str(pairs), str(output), "--quiet"]) == 1
    assert (
        capsys.readouterr().err
        == f"error: {output} already exists; pass --force to replace it, or choose another output file\n"
    )
    assert output.read_bytes() == b"someone's verification set"
    assert make_bin.main([str(pairs), str(output), "--quiet", "--force"]) == 0
    bins, issame = pickle.loads(output.read_bytes())
    assert len(bins) == 4 and issame == [False, True]


def test_full_disk_is_one_line_and_keeps_nothing_half_written(pairs, tmp_path, capsys, monkeypatch):
    output = tmp_path / "val.bin"

    def no_space(obj, handle, protocol):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bin_file.pickle, "dump", no_space)
    assert make_bin.main([str(pairs), str(output), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        f"error: no space left on the device while writing {output}; val.bin was not written; "
        f"free space there and run again\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg", "pairs.txt"]


def test_leftover_temp_file_of_a_killed_run_is_removed(pairs, tmp_path):
    leftover = tmp_path / ".val.bin.k1ll3d.tmp"
    leftover.write_bytes(b"torn")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    assert make_bin.main([str(pairs), str(tmp_path / "val.bin"), "--quiet"]) == 0
    assert not leftover.exists()
    assert atomic_file.remove_stale_temp_files(tmp_path / "val.bin") == []


def test_pgm_resize_and_landmarks_in_one_bin(tmp_path, capsys):
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "a.pgm"), rng.integers(0, 256, (112, 112), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), rng.integers(0, 256, (130, 120, 3), dtype=np.uint8))
    photo = np.zeros((200, 200, 3), np.uint8)
    points = ARCFACE_DST * 1.2 + 15
    for x, y in np.round(points).astype(int):
        photo[y - 1 : y + 2, x - 1 : x + 2] = 255
    cv2.imwrite(str(tmp_path / "c.jpg"), photo)
    (tmp_path / "marks.txt").write_text("c.jpg " + " ".join(f"{v:.2f}" for v in points.ravel()) + "\n")
    (tmp_path / "pairs.txt").write_text("a.pgm b.png 0\na.pgm a.pgm 1\nc.jpg b.png 0\n")
    out = tmp_path / "val.bin"
    assert make_bin.main([str(tmp_path / "pairs.txt"), str(out), "--quiet"]) == 1
    assert "b.png: image is 120x130, expected 112x112; pass --resize 112" in capsys.readouterr().err
    assert (
        make_bin.main(
            [
                str(tmp_path / "pairs.txt"),
                str(out),
                "--quiet",
                "--resize",
                "112",
                "--landmarks",
                str(tmp_path / "marks.txt"),
            ]
        )
        == 0
    )
    vset = load_bin(out)
    assert vset.num_pairs == 3 and list(vset.issame) == [False, True, False]
    np.testing.assert_array_equal(vset.images[0], vset.images[2])  # one image, prepared once, stored twice
    x, y = np.round(ARCFACE_DST[0]).astype(int)
    assert vset.images[4][y - 1 : y + 2, x - 1 : x + 2].max() > 100  # aligned: the left-eye dot on the template


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def test_make_bin_loads_with_restricted_unpickler(identity_folder, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# comment\nalice/0.png alice/1.jpg 1\n\nalice/0.png bob/2.jpg 0\n")
    assert make_bin.main([str(pairs), str(tmp_path / "val.bin"), "--root", str(identity_folder), "--quiet"]) == 0
    bins, issame = _NoGlobals(io.BytesIO((tmp_path / "val.bin").read_bytes())).load()
    assert issame == [True, False] and all(type(s) is bool for s in issame)
    assert len(bins) == 4 and all(type(b) is bytes for b in bins)
    assert bins[0] == (identity_folder / "alice" / "0.png").read_bytes()
    assert bins[3] == (identity_folder / "bob" / "2.jpg").read_bytes()


def test_make_bin_errors_name_the_line(identity_folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("alice/0.png alice/1.jpg 1\nalice/0.png dave/9.jpg 0\n")
    out = tmp_path / "val.bin"
    assert make_bin.main([str(pairs), str(out), "--root", str(identity_folder), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pairs.txt line 2: image" in err and "dave/9.jpg does not exist" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [pairs]
    pairs.write_text("alice/0.png alice/1.jpg maybe\n")
    assert make_bin.main([str(pairs), str(out), "--root", str(identity_folder), "--quiet"]) == 1
    assert "line 1: 'alice/0.png alice/1.jpg maybe' is not 'path1 path2 0|1'" in capsys.readouterr().err


def test_lfw_pairs_file_is_read_as_it_is_in_fold_order(tmp_path, capsys):
    rng = np.random.default_rng(3)
    people = {"Ann_Lee": 2, "Bo_Lu": 2, "Cy_Young": 1}
    for name, count in people.items():
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for number in range(1, count + 1):
            face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / "lfw" / name / f"{name}_{number:04d}.png"), face)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\t1\nAnn_Lee\t1\t2\nAnn_Lee\t1\tCy_Young\t1\nBo_Lu\t1\t2\nBo_Lu\t2\tCy_Young\t1\n")
    out = tmp_path / "lfw.bin"
    assert make_bin.main([str(pairs), str(out), "--root", str(tmp_path / "lfw"), "--quiet"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 4 pairs\n"
    vset = load_bin(out)
    assert list(vset.issame) == [True, False, True, False]
    expected = ["Ann_Lee_0001", "Ann_Lee_0002", "Ann_Lee_0001", "Cy_Young_0001", "Bo_Lu_0001", "Bo_Lu_0002"]
    expected += ["Bo_Lu_0002", "Cy_Young_0001"]
    for image, stem in zip(vset.images, expected, strict=True):
        name = stem.rsplit("_", 1)[0]
        original = cv2.cvtColor(cv2.imread(str(tmp_path / "lfw" / name / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, original)
    (tmp_path / "lfw" / "Cy_Young" / "Cy_Young_0001.png").unlink()
    assert make_bin.main([str(pairs), str(tmp_path / "other.bin"), "--root", str(tmp_path / "lfw"), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        f"error: {pairs} line 3 ('Ann_Lee 1 Cy_Young 1'): image Cy_Young/Cy_Young_0001.jpg (or another format) is "
        f"not in {tmp_path / 'lfw'}; check --root\n"
    )
    assert not (tmp_path / "other.bin").exists()
