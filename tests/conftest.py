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

from .backends import BACKENDS, Backend, opened  # noqa: E402
from .background import start_background_runs, stop_background_runs  # noqa: E402
from .cluster_fixture import (  # noqa: E402
    group_extra_cluster_users,
    rocketmq_cluster,  # noqa: F401
    rocketmq_deployment_cluster,  # noqa: F401
    rocketmq_headers_cluster,  # noqa: F401
    rocketmq_v4_cluster,  # noqa: F401
    stop_extra_clusters_after,
)


def _not_through_proxy(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (and report as deselected) the tests a module run through the proxy
    names in ``NOT_THROUGH_PROXY``, each with the reason it cannot pass there."""
    dropped = []
    checked: set[object] = set()
    for item in items:
        module = getattr(item, "module", None)
        reasons = getattr(module, "NOT_THROUGH_PROXY", None)
        if not reasons:
            continue
        if module not in checked:  # a name no test has is a stale entry: say so
            checked.add(module)
            for key in reasons:
                if not callable(getattr(module, key.split("[")[0], None)):
                    raise pytest.UsageError(f"{module.__name__}.NOT_THROUGH_PROXY: no test {key}")
        name = getattr(item, "originalname", item.name)
        callspec = getattr(item, "callspec", None)
        params = "-".join(p for p in callspec.id.split("-") if p != "sync") if callspec else ""
        if name in reasons or f"{name}[{params}]" in reasons:
            dropped.append(item)
    if dropped:
        items[:] = [item for item in items if item not in dropped]
        config.hook.pytest_deselected(items=dropped)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _not_through_proxy(config, items)
    # Tests sharing an extra cluster run together, so it is started once, briefly.
    group_extra_cluster_users(items)
    # Scenarios that mostly wait run beside the other tests (see tests/background.py).
    start_background_runs(items)


def pytest_sessionfinish() -> None:
    stop_background_runs()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    stop_extra_clusters_after(item)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each driver in turn, with a blocking face (see tests/backends.py)."""
    yield from opened(request.param)
