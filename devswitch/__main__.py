"""``python -m devswitch ...`` is the ``devswitch`` command."""

from _devswitch.cli import main

raise SystemExit(main())
