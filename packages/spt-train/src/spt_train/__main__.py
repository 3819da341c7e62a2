"""``python -m spt_train ...`` (what ``torchrun -m spt_train fit run.yaml`` runs)."""

import sys

from .cli import main

sys.exit(main())
