"""Shared test configuration: hypothesis profiles and the real-cluster fixture."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# dev: a quick look; ci: what .ci/run asks of every property; thorough: ten times
# dev's examples, run before each release (CONTRIBUTING.md, "Before a release").
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from .backends import BACKENDS, Backend, opened  # noqa: E402
from .background import (  # noqa: E402
    SHARED_DIR_ENV,
    start_background_runs,
    start_shared_runs,
    stop_background_runs,
    stop_shared_runs,
)
from .cluster_fixture import (  # noqa: E402
    EXTRA_CLUSTERS,
    group_extra_cluster_users,
    rocketmq_cluster,  # noqa: F401
    rocketmq_deployment_cluster,  # noqa: F401
    rocketmq_headers_cluster,  # noqa: F401
    rocketmq_v4_cluster,  # noqa: F401
    stop_extra_clusters_after,
    stop_shared_session_cluster,
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


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test using the real cluster must be marked ``broker``: unmarked, the unit
    suite (``-m "not broker"``) would run it and start a cluster for it."""
    uses = getattr(item, "fixturenames", ())
    if "rocketmq_cluster" in uses and item.get_closest_marker("broker") is None:
        raise pytest.UsageError(
            f"{item.nodeid} uses the rocketmq_cluster fixture but is not marked "
            "broker (pytestmark = pytest.mark.broker)"
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _not_through_proxy(config, items)
    # Tests sharing an extra cluster run together, so it is started once, briefly.
    group_extra_cluster_users(items)
    # Scenarios that mostly wait run beside the other tests (see tests/background.py).
    start_background_runs(items)


def _cluster_modules(root: Path) -> set[str]:
    """The test modules (paths from ``root``) that start a cluster of their own or use
    an extra cluster (tests/cluster_fixture.py)."""
    marks = ("LocalCluster(", "through_proxy_fixtures(", *EXTRA_CLUSTERS)
    return {
        path.relative_to(root).as_posix()
        for path in (root / "tests").glob("test_*.py")
        if any(mark in path.read_text(encoding="utf-8") for mark in marks)
    }


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How a run spread over pytest-xdist workers hands out the tests (with ``-n``
    and no other ``--dist``): a module's tests go to one worker, in order (its
    module fixtures are made once). The modules that keep a cluster of their own
    for their tests, or use an extra cluster, go to one worker, one after another,
    so two such clusters never run at once, as in a run in one process: each costs
    the two cores some of their time even while idle. (A few tests elsewhere start
    a cluster for a few seconds: the testing guide's examples, in
    tests/test_docs_broker.py and tests/test_package_broker.py.)"""
    if config.getoption("dist") != "load":
        return None  # the user's choice
    from xdist.scheduler import LoadScopeScheduling

    cluster_modules = _cluster_modules(config.rootpath)

    class ByModuleAndCluster(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "clusters" if module in cluster_modules else module

    return ByModuleAndCluster(config, log)


#: The shared directory this process made for its workers, and the watchdog
#: (tests/run_watchdog.py) that cleans up after the run even if this process dies.
_shared_run: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    spread = (
        not hasattr(config, "workerinput")
        and bool(getattr(config.option, "numprocesses", None))
        and getattr(config.option, "dist", "no") != "no"
    )  # the controller of a run spread over workers
    if spread and not os.environ.get(SHARED_DIR_ENV):
        shared = tempfile.mkdtemp(prefix="rocketmq-tests-")
        os.environ[SHARED_DIR_ENV] = shared  # the workers, started after this, inherit it
        watchdog = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("run_watchdog.py")), shared],
            stdin=subprocess.PIPE,
        )
        _shared_run.update(dir=Path(shared), watchdog=watchdog)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """In the controller: start the background scenarios the collected tests need."""
    start_shared_runs(Path(os.environ[SHARED_DIR_ENV]), ids)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _shared_run:
        return
    shared: Path = _shared_run["dir"]
    watchdog: subprocess.Popen[bytes] = _shared_run["watchdog"]
    try:
        stop_shared_runs()
        stop_shared_session_cluster(shared)
    finally:
        # The watchdog kills what is left of the run, and removes the directory.
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        watchdog.wait(60)
        del os.environ[SHARED_DIR_ENV]
        _shared_run.clear()


def pytest_sessionfinish() -> None:
    stop_background_runs()


#: (The controller of a run spread over workers.) Seconds of setup, call and
#: teardown per worker and module (a module-scoped fixture's teardown counts
#: in the module that ran it; a session fixture's, in the worker's last one).
_worker_time: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    worker = getattr(getattr(report, "node", None), "gateway", None)
    if worker is None:
        return
    module = report.nodeid.split("::", 1)[0]
    per_scope = _worker_time.setdefault(worker.id, {})
    per_scope[module] = per_scope.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Where a spread run's time went: each worker's busy seconds and its longest
    modules (the busiest worker bounds the run; CI's time is kept short with it)."""
    if not _worker_time:
        return
    terminalreporter.section("time per worker")
    for worker, per_module in sorted(_worker_time.items()):
        top = sorted(per_module.items(), key=lambda kv: -kv[1])[:4]
        terminalreporter.write_line(
            f"{worker}: {sum(per_module.values()):.0f} s in {len(per_module)} modules; "
            + ", ".join(f"{m.removeprefix('tests/')} {t:.0f} s" for m, t in top)
        )


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    stop_extra_clusters_after(item)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each driver in turn, with a blocking face (see tests/backends.py)."""
    yield from opened(request.param)
