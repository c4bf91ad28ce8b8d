"""`python tools/export_onnx.py`: runs recipes/arcface_torch/cli/export_onnx.py (console command unpg-export-onnx); see its --help."""

import sys

from recipes.arcface_torch.cli.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
