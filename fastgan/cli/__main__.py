"""`python -m fastgan.cli` is the `fastgan` command, as `python -m fastgan` is."""

import sys

from . import main

sys.exit(main())
