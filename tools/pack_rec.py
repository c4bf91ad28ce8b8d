"""`python tools/pack_rec.py`: runs recipes/arcface_torch/cli/pack_rec.py (console command unpg-pack-rec); see its --help."""

import sys

from recipes.arcface_torch.cli.pack_rec import main

if __name__ == "__main__":
    sys.exit(main())
