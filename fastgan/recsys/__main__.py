import sys

from ..cli.eval_recsys import main

sys.exit(main())
