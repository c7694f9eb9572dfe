"""``python -m filterbank``: the command line (see ``filterbank.cli``)."""

import sys

from .cli import main

sys.exit(main())
