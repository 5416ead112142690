"""`make bench`: authz's figures, each target a ratio against a baseline measured in the same run.

    python bench/run.py [--quick] [--only engine,load,tokens,grpc,workers,transport,store]

Prints a table per section and the targets, and writes bench/results.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    # Run as a script: import the bench package (and tests' helpers) from the repository root.
    sys.path[0] = str(REPO)
    from bench.main import main

    sys.exit(main())
