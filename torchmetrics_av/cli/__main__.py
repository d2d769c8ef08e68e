"""``python -m torchmetrics_av.cli``: the same as the ``torchmetrics-av`` command."""

import sys

from torchmetrics_av.cli import main

sys.exit(main())
