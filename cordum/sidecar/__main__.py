"""`python -m cordum.sidecar ...` is the same as `cordum-sidecar ...`."""

import sys

from cordum.sidecar.cli import main

if __name__ == "__main__":
    sys.exit(main())
