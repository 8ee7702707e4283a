"""``python -m uzerg``: the same entry point as the ``uzerg`` command."""

import sys

from uzerg.cli import main

sys.exit(main())
