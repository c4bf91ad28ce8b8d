"""`python tools/align_faces.py`: runs recipes/arcface_torch/cli/align_faces.py (console command unpg-align-faces); see its --help."""

import sys

from recipes.arcface_torch.cli.align_faces import main

if __name__ == "__main__":
    sys.exit(main())
