"""The ``pot-torch`` command."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="pot-torch", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``pot-torch``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.version:
        from pot_torch import __version__

        print(__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
