#!/usr/bin/env python3
"""The local cluster launcher, run from a clone of the source repository:
``python scripts/cluster.py up|status|down|fetch`` is ``rocketmq-cluster`` (see
``rocketmq_testing/cluster.py``). Imported as ``cluster`` (the tests, benchmarks and
examples put this directory on ``sys.path``), it is that module itself."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rocketmq_testing import cluster as _cluster

if __name__ == "__main__":
    sys.exit(_cluster.main())
else:
    sys.modules[__name__] = _cluster
