"""`python tools/make_pairs.py`: runs recipes/arcface_torch/cli/make_pairs.py (console command unpg-make-pairs); see its --help."""

import sys

from recipes.arcface_torch.cli.make_pairs import main

if __name__ == "__main__":
    sys.exit(main())
