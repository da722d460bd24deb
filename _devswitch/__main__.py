"""``python -m devswitch ...`` is the ``devswitch`` command."""

from .cli import main

raise SystemExit(main())
