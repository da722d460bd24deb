"""``python -m devswitch ...`` is the ``devswitch`` command. Python has imported this package first, and with
it begun the switch (``import devswitch``); the command does not switch itself, so that is undone here."""

from _devswitch import session

session.deactivate()

from _devswitch.cli import main  # noqa: E402 - after the switch is undone

raise SystemExit(main())
