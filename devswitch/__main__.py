"""``python -m devswitch ...`` is the ``devswitch`` command. Python has imported this package first to locate
this module; that import does not begin the switch (``session.locating_the_command``), and whatever an earlier
import of devswitch in this process began is undone here: the command does not switch itself."""

from _devswitch import session

session.deactivate()

from _devswitch.cli import main  # noqa: E402 - after the switch is undone

raise SystemExit(main())
