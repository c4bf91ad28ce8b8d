"""The command-line tools, one module per command, each with `main(argv=None) -> int`.

They are installed as console commands (unpg-export-onnx, unpg-pack-rec, ...) and reachable as scripts
through the thin wrappers in tools/ (`python tools/export_onnx.py ...`). Each parses its arguments before it
imports anything heavy, so `--help` answers at once; the data tools never import torch.
"""
