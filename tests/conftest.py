"""Shared test configuration: hypothesis profiles and the real-cluster fixture."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from .backends import BACKENDS, Backend  # noqa: E402
from .cluster_fixture import rocketmq_cluster  # noqa: E402, F401


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each driver in turn, with a blocking face (see tests/backends.py)."""
    made = Backend(request.param)
    try:
        yield made
    finally:
        made.close()
