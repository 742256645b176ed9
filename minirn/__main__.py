"""``python -m minirn ...``: see :mod:`minirn.cli`."""
import sys

from minirn.cli import main

if __name__ == "__main__":
    sys.exit(main())
