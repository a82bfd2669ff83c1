"""``python -m tfrec_xcat`` is the ``tfrec-xcat`` command."""

import sys

from tfrec_xcat.cli import main

sys.exit(main())
