"""`python tools/synthetic_to_rec.py`: runs recipes/arcface_torch/cli/synthetic_to_rec.py (console command unpg-synthetic-to-rec); see its --help."""

import sys

from recipes.arcface_torch.cli.synthetic_to_rec import main

if __name__ == "__main__":
    sys.exit(main())
