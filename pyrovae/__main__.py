"""``python -m pyrovae``: the ``pyrovae`` command (also what ``torchrun ... -m pyrovae`` runs)."""

import sys

from pyrovae.cli import main

sys.exit(main())
