"""``python -m posguard``: the ``posguard`` command (the same as the console script)."""

import sys

from posguard.cli import main

sys.exit(main())
