"""The training-time verification callback: upstream's log lines on its schedule, rank 0 only."""

import logging

from recipes.arcface_torch.evaluation.callback import VerificationCallback
from tests.support.toy_verification import LeftHalfNet, random_set

# ----------------------------------------------------------------------------- callback


class RecordingWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, scalar_value, global_step):
        self.scalars.append((tag, scalar_value, global_step))


def test_callback_logs_upstream_lines_on_schedule(tmp_path, caplog):
    vset = random_set(num_pairs=10, name="lfw")
    writer = RecordingWriter()
    callback = VerificationCallback([vset], frequent=2000, output_dir=tmp_path, summary_writer=writer, batch_size=8)
    model = LeftHalfNet()
    assert callback(1999, model) == {} and callback(0, model) == {}
    with caplog.at_level(logging.INFO, logger="arcface_torch"):
        results = callback(2000, model)
    assert "[lfw][2000]XNorm: " in caplog.text
    lfw = results["lfw"]
    assert f"[lfw][2000]Accuracy-Flip: {lfw['accuracy']:1.5f}+-{lfw['accuracy_std']:1.5f}" in caplog.text
    assert "[lfw][2000]Accuracy-Highest: " in caplog.text
    assert (tmp_path / "similarity_lfw_step0002000.png").read_bytes().startswith(b"\x89PNG")
    assert ("lfw", results["lfw"]["accuracy"], 2000) in writer.scalars
    assert callback(2001, model, force=True)["lfw"]["accuracy_highest"] >= results["lfw"]["accuracy"]
    other_rank = VerificationCallback([vset], frequent=1, output_dir=tmp_path, rank=1)
    assert other_rank(5, model, force=True) == {}
