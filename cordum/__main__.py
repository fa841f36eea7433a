"""`python -m cordum ...` runs the same CLI as the `cordum` console script."""

import sys

from cordum.cli import main

if __name__ == "__main__":
    sys.exit(main())
