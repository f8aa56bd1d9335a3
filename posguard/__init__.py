"""posguard: a terminal-side POS error handler."""

import logging as _logging

__version__ = "0.1.0"

# a library's loggers stay quiet until a program configures them (posguard run: posguard.logs.setup_logging)
_logging.getLogger("posguard").addHandler(_logging.NullHandler())
