"""inspect_rec misuse: one line on stderr and a non-zero exit, no traceback."""

from tools import inspect_rec


def test_negative_samples_is_one_line_error(tmp_path, capsys):
    assert inspect_rec.main([str(tmp_path), "--samples", "-5"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "error: --samples -5 must be a positive number of images to decode, e.g. --samples 8 "
        "(or --full to decode every image)\n"
    )
    assert captured.out == ""
