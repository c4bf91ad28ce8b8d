"""`python tools/eval_ijb.py`: runs recipes/arcface_torch/cli/eval_ijb.py (console command unpg-eval-ijb); see its --help."""

import sys

from recipes.arcface_torch.cli.eval_ijb import main

if __name__ == "__main__":
    sys.exit(main())
