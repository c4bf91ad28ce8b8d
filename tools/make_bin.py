"""`python tools/make_bin.py`: runs recipes/arcface_torch/cli/make_bin.py (console command unpg-make-bin); see its --help."""

import sys

from recipes.arcface_torch.cli.make_bin import main

if __name__ == "__main__":
    sys.exit(main())
