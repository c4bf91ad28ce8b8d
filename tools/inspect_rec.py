"""`python tools/inspect_rec.py`: runs recipes/arcface_torch/cli/inspect_rec.py (console command unpg-inspect-rec); see its --help."""

import sys

from recipes.arcface_torch.cli.inspect_rec import main

if __name__ == "__main__":
    sys.exit(main())
