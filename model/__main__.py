"""``python -m model summary ...``: the same as ``vtfpar summary ...``."""

import sys

from .summary import main

if sys.argv[1:2] != ["summary"]:
    sys.exit("usage: python -m model summary [--help] (or: vtfpar summary)")
sys.exit(main(sys.argv[2:]))
