"""``python -m azr``: the command line, also what ``torchrun ... -m azr train`` starts per rank."""

import sys

from azr.cli import main

if __name__ == "__main__":
    sys.exit(main())
