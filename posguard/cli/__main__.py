"""``python -m posguard.cli``: the ``posguard`` command."""

import sys

from posguard.cli import main

sys.exit(main())
