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
