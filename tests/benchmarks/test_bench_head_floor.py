"""bench_head_floor: argument errors, and one tiny real run whose table holds every variant."""

import importlib.util

import pytest

from tests.support import REPO_ROOT

_SPEC = importlib.util.spec_from_file_location("bench_head_floor", REPO_ROOT / "benchmarks" / "bench_head_floor.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_bad_sizes_and_chunks_are_one_line_errors(capsys):
    for argv, message in (
        (["--sizes", "512"], "size '512' is not BxC_LOCAL, e.g. 512x100000"),
        (["--sizes", "0x10"], "size '0x10' needs B >= 1 and C_local >= 1"),
        (["--chunk", "big"], "chunk 'big' is not a number of classes >= 1 nor 'auto'"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_a_tiny_run_measures_every_variant(capsys):
    code = bench.main(["--sizes", "16x300", "--chunk", "64", "auto", "--budget", "4", "0", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0
    for variant in ("dense", "chunk 64", "chunk auto", "chunk 64 @0", "floor"):
        assert f"| {variant:<16} |" in out
    assert "    5/5 |" in out and "    0/5 |" in out  # all kept; all recomputed at budget 0
    assert "SKIP chunked / floor <= 1.3 at B=512, C_local=100000" in out


def test_sampled_floor_uses_the_sampled_centres(capsys):
    assert bench.main(["--sizes", "16x400", "--chunk", "64", "--sample-rate", "0.5", "--repeats", "1"]) == 0
    assert "K = 200 centres used per step" in capsys.readouterr().out
