"""``python -m trio_mqtt`` and the ``trio-mqtt`` script: the command-line tool.

Run ``trio-mqtt --help`` for the commands (sub, pub, bench, demo) and the exit codes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from ._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
