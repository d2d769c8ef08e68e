"""``python -m torchmetrics_av.cli``: the same as the ``torchmetrics-av`` command."""

import sys

from torchmetrics_av.cli import console_main

sys.exit(console_main())
