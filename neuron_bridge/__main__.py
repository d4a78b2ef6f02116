"""``python -m neuron_bridge``: the same as the ``dhs-neuron`` command."""

import sys

from .cli import main

sys.exit(main())
