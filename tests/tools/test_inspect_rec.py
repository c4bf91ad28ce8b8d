"""inspect_rec: exit codes on good and broken folders; misuse is one line on stderr, no traceback."""

from recipes.arcface_torch.cli import inspect_rec
from tests.support import FIXTURES


def test_negative_samples_is_one_line_error(tmp_path, capsys):
    assert inspect_rec.main([str(tmp_path), "--samples", "-5"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "error: --samples -5 must be a positive number of images to decode, e.g. --samples 8 "
        "(or --full to decode every image)\n"
    )
    assert captured.out == ""


def test_inspect_rec_exit_codes(identity_rec, tmp_path, capsys):
    assert inspect_rec.main([str(identity_rec), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "identities   3",
        "images       9 faces of 112x112 pixels (8 spread samples decoded)",
        "status       OK",
    ]
    assert inspect_rec.main([str(identity_rec), "--quiet", "--full"]) == 0
    out = capsys.readouterr().out
    assert "13/13 land on a record start" in out and "with images  3 identities" in out
    assert "a header record at key 0 names the image keys: 1..9; 4 other records" in out and "note" not in out
    assert inspect_rec.main([str(FIXTURES / "mxnet"), "--quiet"]) == 0
    capsys.readouterr()

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("train.rec", "property"):
        (broken / name).write_bytes((identity_rec / name).read_bytes())
    lines = (identity_rec / "train.idx").read_text().splitlines()
    key, offset = lines[3].split("\t")
    lines[3] = f"{key}\t{int(offset) + 4}"
    (broken / "train.idx").write_text("\n".join(lines) + "\n")
    assert inspect_rec.main([str(broken), "--quiet", "--full"]) == 1
    captured = capsys.readouterr()
    assert "12/13 land on a record start" in captured.out and "PROBLEM      key 3: offset" in captured.out
    assert "key 3: offset" in captured.err and "does not hold the magic word" in captured.err

    (broken / "train.idx").write_bytes((identity_rec / "train.idx").read_bytes())
    (broken / "property").unlink()
    assert inspect_rec.main([str(broken), "--quiet"]) == 1
    assert "has no `property` file" in capsys.readouterr().err
    assert inspect_rec.main([str(tmp_path / "nowhere")]) == 1


def test_odd_but_usable_folders_get_a_note(identity_rec, tmp_path, capsys):
    odd = tmp_path / "odd"
    odd.mkdir()
    for name in ("train.rec", "train.idx"):
        (odd / name).write_bytes((identity_rec / name).read_bytes())
    (odd / "property").write_text("5,112,112\n")  # two identities more than the images have
    assert inspect_rec.main([str(odd), "--quiet", "--full"]) == 0
    out = capsys.readouterr().out
    assert "note         only 3 of the 5 identities in `property` have images" in out
    assert "note         4 records are not images, where the layout leads to expect 6" in out
