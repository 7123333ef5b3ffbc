"""``python -m vidpose``: the ``vidpose`` command (:func:`vidpose.cli.main`)."""

import sys

from vidpose.cli import main

if __name__ == "__main__":
    sys.exit(main())
