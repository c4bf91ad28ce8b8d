"""`python tools/convert_onnx.py`: runs recipes/arcface_torch/cli/convert_onnx.py (console command unpg-convert-onnx); see its --help."""

import sys

from recipes.arcface_torch.cli.convert_onnx import main

if __name__ == "__main__":
    sys.exit(main())
