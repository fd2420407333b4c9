"""``python -m service``: the same command line as the ``cookie-session-service`` script."""

import sys

from .cli import main

raise SystemExit(main(sys.argv[1:]))
