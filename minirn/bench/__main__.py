"""``python -m minirn.bench``: the benchmark (also ``python -m minirn bench``; the memory worker runs this way)."""
import sys

from minirn.bench import main

if __name__ == "__main__":
    sys.exit(main())
