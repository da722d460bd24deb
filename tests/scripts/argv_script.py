"""Prints what a script sees, then exits as asked: --exit N, --raise, --interrupt."""

import sys

print("RESULT " + __import__("json").dumps({"argv": sys.argv, "name": __name__,
                                             "path0": sys.path[0]}))
if "--raise" in sys.argv:
    raise LookupError("the script's own error")
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
