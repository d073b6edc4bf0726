"""The package as users get it: the wheel and the sdist build, pass ``twine check``,
and the wheel installed into fresh virtual environments (without extras, and with
``[gevent,cli,testing]``) imports and sends to the real cluster; there the testing
plugin's fixture serves a user's test, with the session's cluster and with one it
starts itself.

The build runs without isolation (hatchling comes with the ``dev`` extra), so it
needs no package index. Installing the ``[gevent]`` extra does: pip fetches gevent
and its dependencies from the index (its cache makes that quick after the first
time). The environments are made without pip and filled by this interpreter's
pip (``pip --python``), which is faster than bootstrapping pip into each.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rocketmq_proto
import rocketmq_sync

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rocketmq_proto", "rocketmq_asyncio", "rocketmq_sync", "rocketmq_gevent")
#: The command line's package (the ``cli`` extra brings what it needs) and the
#: testing package (the ``testing`` extra).
CLI = "rocketmq_cli"
TESTING = "rocketmq_testing"
DISTRIBUTION = "rocketmq-remoting"


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _run(args: list[str], *, timeout: float = 240.0, **kwargs: Any) -> str:
    run = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert run.returncode == 0, f"{args[:4]}... failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # The sdist first, then the wheel built from the unpacked sdist: a file the sdist
    # lacks breaks the wheel.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Built(wheel, sdist)


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: Any) -> str:
    name = f"Package_{uuid.uuid4().hex[:10]}"
    with rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
    return name


def test_the_artifacts_are_named_and_versioned_from_the_source(built: Built) -> None:
    version = rocketmq_proto.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", version), version
    stem = DISTRIBUTION.replace("-", "_")
    assert built.wheel.name == f"{stem}-{version}-py3-none-any.whl"
    assert built.sdist.name == f"{stem}-{version}.tar.gz"


def test_twine_check_passes(built: Built) -> None:
    out = _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.wheel), str(built.sdist)]
    )
    assert out.count("PASSED") == 2, out


def test_the_wheel_holds_the_packages_and_the_metadata(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = wheel.read(metadata_name).decode()
    for package in (*PACKAGES, CLI, TESTING):
        assert f"{package}/__init__.py" in names, package
        assert f"{package}/py.typed" in names, package
    assert f"{TESTING}/cluster_pom.xml" in names  # the launcher's Maven template
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(built.wheel) as wheel:
        declared = wheel.read(entry_points).decode()
    assert "rocketmq = rocketmq_cli:main" in declared
    assert "rocketmq-cluster = rocketmq_testing.cluster:main" in declared
    assert "[pytest11]\nrocketmq = rocketmq_testing.pytest_plugin" in declared, declared
    assert not any(n.startswith(("tests/", "scripts/", "docs/", "benchmarks/")) for n in names)
    dist_info = metadata_name.rsplit("/", 1)[0]
    assert {f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/NOTICE"} <= names
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Name: {DISTRIBUTION}" in headers
    assert f"Version: {rocketmq_proto.__version__}" in headers
    assert "License-Expression: Apache-2.0" in headers
    assert "Requires-Python: >=3.11" in headers
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {minor}" in headers
    for extra in ("gevent", "cli", "testing"):
        assert f"Provides-Extra: {extra}" in headers, extra
    assert not any(h.startswith("Requires-Dist:") and "extra ==" not in h for h in headers), (
        "the core must keep no runtime dependency"
    )
    # The long description is the README, which starts with the two set-up commands.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Description-Content-Type: text/markdown" in headers
    assert metadata.split("\n\n", 1)[1].strip() == readme.strip()


def test_the_sdist_holds_the_license_changelog_and_sources(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("LICENSE", "NOTICE", "README.md", "CHANGELOG.md", "pyproject.toml"):
        assert needed in names, needed
    for package in (*PACKAGES, CLI, TESTING):
        assert f"{package}/__init__.py" in names, package
    assert f"{TESTING}/cluster_pom.xml" in names


#: Run inside each fresh environment: imports every package it should have, checks
#: where they come from and their version, then sends with two drivers (three with
#: gevent) and prints what it found as JSON.
SMOKE = r"""
import asyncio, importlib, json, sys
namesrv, topic, with_gevent = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
found = {}
for name in ("rocketmq_proto", "rocketmq_asyncio", "rocketmq_sync", "rocketmq_gevent"):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        found[name] = {"error": repr(exc)}
    else:
        found[name] = {"file": module.__file__, "version": module.__version__}
import rocketmq_asyncio, rocketmq_sync
sent = {}
with rocketmq_sync.Producer(namesrv, group="package_smoke", send_timeout=20) as producer:
    sent["sync"] = producer.send(rocketmq_sync.Message(topic, b"from the wheel (sync)")).msg_id

async def main():
    async with rocketmq_asyncio.Producer(namesrv, group="package_smoke", send_timeout=20) as p:
        result = await p.send(rocketmq_asyncio.Message(topic, b"from the wheel (asyncio)"))
        return result.msg_id

sent["asyncio"] = asyncio.run(main())
if with_gevent:
    import rocketmq_gevent
    with rocketmq_gevent.Producer(namesrv, group="package_smoke", send_timeout=20) as producer:
        message = rocketmq_gevent.Message(topic, b"from the wheel (gevent)")
        sent["gevent"] = producer.send(message).msg_id
print(json.dumps({"prefix": sys.prefix, "found": found, "sent": sent}))
"""


@pytest.fixture(scope="module")
def fresh_envs(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two fresh environments with the wheel: ``bare`` (no extra, no dependency
    installed) and ``gevent`` (``[gevent,cli,testing]``, their dependencies from the
    index)."""
    envs: dict[str, Path] = {}
    for name, requirement in (
        ("bare", str(built.wheel)),
        ("gevent", f"{DISTRIBUTION} [gevent,cli,testing] @ {built.wheel.as_uri()}"),
    ):
        home = tmp_path_factory.mktemp(f"venv_{name}")
        _run([sys.executable, "-m", "venv", "--without-pip", str(home)])
        python = home / "bin" / "python"
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
        if name == "bare":
            pip.append("--no-deps")
        _run([*pip, "--only-binary", ":all:", requirement], timeout=300)
        envs[name] = python
    yield envs


def _smoke(python: Path, namesrv: str, topic: str, with_gevent: bool, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NAMESRV_ADDR")}
    out = _run(
        [str(python), "-I", "-c", SMOKE, namesrv, topic, "1" if with_gevent else "0"],
        cwd=cwd,
        env=env,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("env", ["bare", "gevent"])
def test_the_installed_wheel_imports_and_sends(
    env: str,
    fresh_envs: dict[str, Path],
    rocketmq_cluster: Any,
    topic: str,
    tmp_path: Path,
) -> None:
    python = fresh_envs[env]
    result = _smoke(python, rocketmq_cluster.namesrv_addr, topic, env == "gevent", tmp_path)
    prefix = Path(result["prefix"]).resolve()
    assert prefix == python.parent.parent.resolve()
    found = result["found"]
    expected = PACKAGES if env == "gevent" else PACKAGES[:3]
    for name in expected:
        assert "file" in found[name], (name, found[name])
        # Imported from the environment, not from the source tree.
        assert Path(found[name]["file"]).resolve().is_relative_to(prefix), found[name]
        assert found[name]["version"] == rocketmq_proto.__version__
    if env == "bare":
        # Nothing leaks in: without the extra there is no gevent to import.
        assert "No module named 'gevent'" in found["rocketmq_gevent"]["error"], found[
            "rocketmq_gevent"
        ]
    drivers = {"sync", "asyncio", "gevent"} if env == "gevent" else {"sync", "asyncio"}
    assert set(result["sent"]) == drivers
    with rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr) as admin:
        for msg_id in result["sent"].values():
            assert admin.view_message(msg_id, topic=topic).topic == topic


def test_the_console_script_runs_with_the_cli_extra_and_says_what_is_missing_without(
    fresh_envs: dict[str, Path], rocketmq_cluster: Any, topic: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NAMESRV_ADDR")}
    with_cli = fresh_envs["gevent"].parent / "rocketmq"
    out = _run([str(with_cli), "--version"], cwd=tmp_path, env=env)
    assert rocketmq_proto.__version__ in out
    route = _run(
        [
            str(with_cli),
            "--namesrv",
            rocketmq_cluster.namesrv_addr,
            "--json",
            "topic",
            "route",
            topic,
        ],
        cwd=tmp_path,
        env=env,
    )
    assert json.loads(route)["brokers"], route
    # The entry point is installed without the extra too: it names what to install.
    bare = subprocess.run(
        [str(fresh_envs["bare"].parent / "rocketmq"), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert bare.returncode == 2, bare
    assert "needs the 'cli' extra" in bare.stderr and "Traceback" not in bare.stderr, bare.stderr


def _documented_plugin_test() -> str:
    """The test of the testing guide, as a user would copy it."""
    page = (ROOT / "docs" / "guides" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.M | re.S)
    (test,) = [block for block in blocks if "def test_" in block]
    return str(test)


@pytest.mark.parametrize("cluster", ["given", "started"])
def test_the_testing_plugin_serves_a_users_test(
    cluster: str, fresh_envs: dict[str, Path], rocketmq_cluster: Any, tmp_path: Path
) -> None:
    """pytest in the environment with the ``testing`` extra loads the plugin by
    itself; the documented test passes with the cluster ``ROCKETMQ_NAMESRV`` names
    (``given``: nothing started) and with none named (``started``: the plugin starts
    a name server and two brokers, and stops them at the end)."""
    (tmp_path / "test_user.py").write_text(_documented_plugin_test(), encoding="utf-8")
    (tmp_path / "test_where.py").write_text(
        "def test_where(rocketmq_cluster):\n"
        "    print('CLUSTER', type(rocketmq_cluster).__name__, rocketmq_cluster.namesrv_addr)\n",
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "NAMESRV_ADDR", "ROCKETMQ_NAMESRV", "ROCKETMQ_VERSION")
    }
    if cluster == "given":
        env["ROCKETMQ_NAMESRV"] = rocketmq_cluster.namesrv_addr
    python = fresh_envs["gevent"]
    args = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-v", "-s"]
    out = _run([*args, "test_user.py", "test_where.py"], cwd=tmp_path, env=env, timeout=300)
    assert re.search(r"test_user.py::test_an_order_is_sent_and_read_back .*PASSED", out), out
    assert "2 passed" in out, out
    (kind, namesrv) = re.findall(r"CLUSTER (\w+) (\S+)", out)[0]
    if cluster == "given":
        assert (kind, namesrv) == ("ExternalCluster", rocketmq_cluster.namesrv_addr), out
    else:
        assert kind == "LocalCluster" and namesrv != rocketmq_cluster.namesrv_addr, out
        # Stopped at the session's end: its name server no longer answers.
        host, port = namesrv.rsplit(":", 1)
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
            pass
    plugins = _run([*args, "--version", "--version"], cwd=tmp_path, env=env)
    assert "rocketmq-remoting" in plugins, plugins
