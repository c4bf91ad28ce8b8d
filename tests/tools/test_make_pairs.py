"""make_pairs: balanced or all pairs from a folder of identities, ready for make_bin."""

import cv2
import numpy as np

from recipes.arcface_torch.cli import make_bin, make_pairs
from recipes.arcface_torch.evaluation.bin_file import load_bin


def _folder(root, identities=4, per=3, size=112):
    rng = np.random.default_rng(0)
    for k in range(identities):
        (root / f"id{k}").mkdir(parents=True)
        for j in range(per):
            cv2.imwrite(str(root / f"id{k}" / f"{j}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _read(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_balanced_pairs_file_is_half_positive_and_labels_match_folders(tmp_path, capsys):
    _folder(tmp_path / "faces")
    out = tmp_path / "pairs.txt"
    assert make_pairs.main([str(tmp_path / "faces"), str(out), "--num-pairs", "20"]) == 0
    rows = _read(out)
    assert len(rows) == 20 and sum(r[2] == "1" for r in rows) == 10
    assert all((r[0].split("/")[0] == r[1].split("/")[0]) == (r[2] == "1") for r in rows)
    assert len({(r[0], r[1]) for r in rows}) == 20
    assert capsys.readouterr().out == f"wrote {out}: 10 positive and 10 negative pairs\n"
    # an existing pairs file is kept unless --force
    assert make_pairs.main([str(tmp_path / "faces"), str(out), "--num-pairs", "100"]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err and len(_read(out)) == 20
    # 4 identities x 3 faces hold 12 positive pairs: asking for 100 says so
    assert make_pairs.main([str(tmp_path / "faces"), str(out), "--num-pairs", "100", "--force"]) == 0
    assert "only 12 positive pairs" in capsys.readouterr().out and len(_read(out)) == 24


def test_all_pairs_then_make_bin_gives_every_pair_once(tmp_path):
    _folder(tmp_path / "faces", identities=3, per=2, size=96)
    pairs = tmp_path / "pairs.txt"
    assert make_pairs.main([str(tmp_path / "faces"), str(pairs), "--all"]) == 0
    rows = _read(pairs)
    assert len(rows) == 15 and sum(r[2] == "1" for r in rows) == 3  # 6*5/2 pairs, one positive per identity
    out = tmp_path / "all.bin"
    assert make_bin.main([str(pairs), str(out), "--root", str(tmp_path / "faces"), "--resize", "112", "--quiet"]) == 0
    vset = load_bin(out)
    assert vset.num_pairs == 15 and vset.images.shape == (30, 112, 112, 3) and vset.issame.sum() == 3


def test_make_pairs_errors(tmp_path, capsys):
    assert make_pairs.main([str(tmp_path / "nowhere"), str(tmp_path / "p.txt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "one" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "one" / "a" / "0.png"), np.zeros((112, 112, 3), np.uint8))
    assert make_pairs.main([str(tmp_path / "one"), str(tmp_path / "p.txt")]) == 1
    assert "0 positive and 0 negative pairs" in capsys.readouterr().err
    assert make_pairs.main([str(tmp_path / "one"), str(tmp_path / "p.txt"), "--num-pairs", "1"]) == 1
    assert "--num-pairs 1 must be >= 2" in capsys.readouterr().err


def test_lfw_pairs_become_a_pairs_file_in_fold_order(tmp_path, capsys):
    for name, count in {"Ann_Lee": 2, "Bo_Lu": 1}.items():
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for number in range(1, count + 1):
            cv2.imwrite(str(tmp_path / "lfw" / name / f"{name}_{number:04d}.jpg"), np.zeros((112, 112, 3), np.uint8))
    lfw_pairs = tmp_path / "pairs.txt"
    lfw_pairs.write_text("1\t1\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Lu\t1\n")
    out = tmp_path / "fold_order.txt"
    assert make_pairs.main([str(tmp_path / "lfw"), str(out), "--lfw-pairs", str(lfw_pairs)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 1 positive and 1 negative pairs in 1 LFW folds\n"
    assert [row for row in _read(out) if row[0] != "#"] == [
        ["Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", "1"],
        ["Ann_Lee/Ann_Lee_0002.jpg", "Bo_Lu/Bo_Lu_0001.jpg", "0"],
    ]
    assert make_bin.main([str(out), str(tmp_path / "lfw.bin"), "--root", str(tmp_path / "lfw"), "--quiet"]) == 0
    assert list(load_bin(tmp_path / "lfw.bin").issame) == [True, False]
    lfw_pairs.write_text("1\t1\nAnn_Lee\t1\t3\nAnn_Lee\t2\tBo_Lu\t1\n")
    assert make_pairs.main([str(tmp_path / "lfw"), str(tmp_path / "x.txt"), "--lfw-pairs", str(lfw_pairs)]) == 1
    assert "line 2 ('Ann_Lee 1 3'): image Ann_Lee/Ann_Lee_0003.jpg (or another format)" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
