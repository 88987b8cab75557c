"""`python -m fastgan` is the `fastgan` command (torchrun launches it this way)."""

import sys

from .cli import main

sys.exit(main())
