"""devswitch's machinery: every module here imports without side effects (no framework started, nothing
printed, nothing applied). The public face is the ``devswitch`` package, whose import activates the switch;
the ``devswitch`` command, the compare workers, the notebook extension and the tests import from here."""
