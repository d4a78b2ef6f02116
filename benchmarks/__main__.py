"""``python -m benchmarks``: the same as the ``dhs-bench`` command."""

import sys

from .cli import main

sys.exit(main())
