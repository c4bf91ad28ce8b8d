"""LFW's pairs files: both row kinds, fold order, the view-1 header, image extensions, and each malformed file."""

import numpy as np
import pytest

from recipes.arcface_torch.evaluation.lfw_pairs import looks_like_lfw_pairs, read_lfw_pairs

PEOPLE = {"Ann_Lee": 3, "Bo_Diddley": 2, "Cy_Young": 1, "Di_Lu": 2}


@pytest.fixture()
def lfw_root(tmp_path):
    root = tmp_path / "lfw"
    for name, count in PEOPLE.items():
        (root / name).mkdir(parents=True)
        for number in range(1, count + 1):
            (root / name / f"{name}_{number:04d}.jpg").write_bytes(b"jpeg")
    return root


# 2 folds of 2 same-person rows then 2 different-person rows, as LFW's pairs.txt (tabs) lays out its 10 x 300
PAIRS = """2\t2
Ann_Lee\t1\t2
Bo_Diddley\t1\t2
Ann_Lee\t3\tCy_Young\t1
Bo_Diddley\t2\tDi_Lu\t1
Ann_Lee\t2\t3
Di_Lu\t1\t2
Cy_Young\t1\tDi_Lu\t2
Ann_Lee\t1\tBo_Diddley\t1
"""


def test_rows_of_both_kinds_come_out_in_lfw_fold_order(lfw_root, tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS)
    assert looks_like_lfw_pairs(path)
    pairs = read_lfw_pairs(path, lfw_root)
    names = [(p.first.relative_to(lfw_root).as_posix(), p.second.relative_to(lfw_root).as_posix()) for p in pairs]
    assert names == [
        ("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg"),
        ("Bo_Diddley/Bo_Diddley_0001.jpg", "Bo_Diddley/Bo_Diddley_0002.jpg"),
        ("Ann_Lee/Ann_Lee_0003.jpg", "Cy_Young/Cy_Young_0001.jpg"),
        ("Bo_Diddley/Bo_Diddley_0002.jpg", "Di_Lu/Di_Lu_0001.jpg"),
        ("Ann_Lee/Ann_Lee_0002.jpg", "Ann_Lee/Ann_Lee_0003.jpg"),
        ("Di_Lu/Di_Lu_0001.jpg", "Di_Lu/Di_Lu_0002.jpg"),
        ("Cy_Young/Cy_Young_0001.jpg", "Di_Lu/Di_Lu_0002.jpg"),
        ("Ann_Lee/Ann_Lee_0001.jpg", "Bo_Diddley/Bo_Diddley_0001.jpg"),
    ]
    assert [p.issame for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.line for p in pairs] == list(range(2, 10))


def test_the_view_one_header_and_other_image_formats(lfw_root, tmp_path):
    (lfw_root / "Ann_Lee" / "Ann_Lee_0001.jpg").rename(lfw_root / "Ann_Lee" / "Ann_Lee_0001.png")
    path = tmp_path / "pairsDevTest.txt"
    path.write_text("1\nAnn_Lee 1 2\nCy_Young 1 Di_Lu 2\n")
    pairs = read_lfw_pairs(path, lfw_root)
    assert [p.first.name for p in pairs] == ["Ann_Lee_0001.png", "Cy_Young_0001.jpg"]
    assert [p.issame for p in pairs] == [True, False] and {p.fold for p in pairs} == {0}


def test_a_missing_image_names_the_row_and_the_file(lfw_root, tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS.replace("Di_Lu\t1\t2", "Di_Lu\t1\t7"))
    message = (
        f"{path} line 7 ('Di_Lu 1 7'): image Di_Lu/Di_Lu_0007.jpg (or another format) is not in {lfw_root}; "
        f"check --root"
    )
    with pytest.raises(FileNotFoundError) as error:
        read_lfw_pairs(path, lfw_root)
    assert str(error.value) == message
    path.write_text(PAIRS.replace("Cy_Young\t1\tDi_Lu\t2", "Cy_Yung\t1\tDi_Lu\t2"))
    with pytest.raises(FileNotFoundError, match=r"line 8 .*: image Cy_Yung/Cy_Yung_0001.jpg \(or another format\)"):
        read_lfw_pairs(path, lfw_root)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: text.replace("2\t2\n", "2\t3\n", 1),
            r"promises 2 folds of 3 same-person .* \(12 rows\) but the file has 8",
        ),
        (
            lambda text: text.replace("Bo_Diddley\t1\t2", "Bo_Diddley\t1\tDi_Lu\t2"),
            r"line 3 .*: row 2 of fold 1 should be 'name n1 n2' \(same person\)",
        ),
        (
            lambda text: text.replace("Ann_Lee\t1\tBo_Diddley\t1", "Ann_Lee\t1\t2"),
            r"line 9 .*: row 4 of fold 2 should be 'name1 n1 name2 n2' \(different people\)",
        ),
        (lambda text: text.replace("Ann_Lee\t2\t3", "Ann_Lee\t2\tx"), r"line 6 .*: image number 'x' is not a positive"),
        (lambda text: text.replace("2\t2\n", "ten\t300\n", 1), r"line 1: 'ten 300' is not LFW's header"),
        (lambda text: "", r"is empty; expected LFW's header line '10 300'"),
    ],
)
def test_malformed_files_name_the_line_and_the_fix(lfw_root, tmp_path, edit, message):
    path = tmp_path / "pairs.txt"
    path.write_text(edit(PAIRS))
    with pytest.raises(ValueError, match=message):
        read_lfw_pairs(path, lfw_root)


def test_only_lfw_headers_are_taken_for_lfw_files(tmp_path):
    ours = tmp_path / "ours.txt"
    ours.write_text("# a comment\na/1.jpg b/1.jpg 0\n")
    assert not looks_like_lfw_pairs(ours)
    lfw = tmp_path / "lfw.txt"
    lfw.write_text("\n10\t300\nA 1 2\n")
    assert looks_like_lfw_pairs(lfw)
    with pytest.raises(FileNotFoundError, match="LFW pairs file .* not found; LFW's view 2 file is pairs.txt"):
        read_lfw_pairs(tmp_path / "absent.txt", tmp_path)


def test_ten_folds_of_six_hundred_are_the_contiguous_folds_of_the_accuracy():
    """The recipe's 10-fold split (contiguous, no shuffle) of 6000 pairs is exactly LFW's folds of 600."""
    from recipes.arcface_torch.evaluation.verification import kfold_splits

    for fold, (_, test) in enumerate(kfold_splits(6000, 10)):
        np.testing.assert_array_equal(test, np.arange(600 * fold, 600 * (fold + 1)))
