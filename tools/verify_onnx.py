"""`python tools/verify_onnx.py`: runs recipes/arcface_torch/cli/verify_onnx.py (console command unpg-verify-onnx); see its --help."""

import sys

from recipes.arcface_torch.cli.verify_onnx import main

if __name__ == "__main__":
    sys.exit(main())
