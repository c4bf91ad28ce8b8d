"""`python tools/face_quality.py`: runs recipes/arcface_torch/cli/face_quality.py (console command unpg-face-quality); see its --help."""

import sys

from recipes.arcface_torch.cli.face_quality import main

if __name__ == "__main__":
    sys.exit(main())
