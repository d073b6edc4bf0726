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
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rocketmq_proto
import rocketmq_sync

from . import doc_blocks

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


# ------------------------------------------------------ the documented installs


@dataclass
class Install:
    """A documented ``pip install`` command: where it is written, and the commands
    its blocks run after it (in what it installed)."""

    command: str  # as written, without a trailing comment
    places: list[str]
    followers: list[str]


def documented_installs() -> dict[str, Install]:
    """Every distinct ``pip install`` command of the documentation, in blocks and in
    the text, in the order of first appearance."""
    found: dict[str, Install] = {}
    for fence in doc_blocks.pip_fences():
        current: Install | None = None
        for number, line in enumerate(fence.lines, fence.line + 1):
            command = doc_blocks.command_of(line)
            if not command:
                continue
            if doc_blocks.is_pip_line(command):
                current = found.setdefault(command, Install(command, [], []))
                current.places.append(f"{fence.path}:{number}")
            else:
                assert current is not None, f"{fence.path}:{number}: a command before pip install"
                current.followers.append(line.strip())
    for where, command in doc_blocks.inline_pip_commands():
        found.setdefault(command, Install(command, [], [])).places.append(where)
    return found


#: The modules whose presence tells what an install brought (each of a dependency of
#: some extra, or of a documented command's).
PROBES = (
    *("gevent", "click", "rich", "hypothesis", "pytest", "gunicorn", "zstandard", "lz4"),
    "opentelemetry.metrics",
)
#: What each documented command must make importable: of ``PROBES`` exactly these
#: (the others must be missing), and some of the package's own modules that need them.
INSTALLS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "pip install rocketmq-remoting": (set(), ("rocketmq_asyncio", "rocketmq_sync")),
    "pip install 'rocketmq-remoting[gevent]'": ({"gevent"}, ("rocketmq_gevent",)),
    "pip install 'rocketmq-remoting[cli]'": ({"click", "rich"}, ("rocketmq_cli._app",)),
    'pip install "rocketmq-remoting[fuzz]"': ({"hypothesis"}, ("rocketmq_proto.strategies",)),
    "pip install 'rocketmq-remoting[testing]'": (
        {"pytest"},
        ("rocketmq_testing.pytest_plugin",),
    ),
    "pip install 'gunicorn[gevent]' 'rocketmq-remoting[gevent]'": (
        {"gevent", "gunicorn"},
        ("rocketmq_gevent",),
    ),
    "pip install 'rocketmq-remoting[gevent,zstd]'": ({"gevent", "zstandard"}, ("rocketmq_gevent",)),
    "pip install 'rocketmq-remoting[otel]'": ({"opentelemetry.metrics"}, ("rocketmq_proto.otel",)),
}
#: Documented commands not run here, and why.
NOT_INSTALLED = {
    "pip install -e '.[docs]'": "a contributor's, in a clone (README's Documentation): the "
    "dev extra holds the same documentation tools, and tests/test_docs_broker.py builds "
    "the site with them (mkdocs build --strict)",
}
#: Commands of an install block that serve until stopped: not run after the install,
#: but by the test named.
SERVING = {"gunicorn -c gunicorn.conf.py app:app": "test_the_gunicorn_guide_serves_as_documented"}

#: Run in an environment after an install: which modules import, from where, and
#: which distributions are installed.
PROBE = r"""
import importlib, importlib.metadata, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        found[name] = {"error": repr(exc)}
    else:
        found[name] = {"file": getattr(module, "__file__", None)}
dists = sorted({d.metadata["Name"].lower() for d in importlib.metadata.distributions()})
print(json.dumps({"prefix": sys.prefix, "found": found, "dists": dists,
                  "version": importlib.metadata.version("rocketmq-remoting")}))
"""


@dataclass
class Installed:
    home: Path
    env: dict[str, str]
    output: str  # the install's and its followers', with bash -x traces
    returncode: int
    seconds: float


def _install_env(home: Path, find_links: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "NAMESRV_ADDR", "ROCKETMQ_NAMESRV", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(home)
    # The package is found there; the extras' dependencies on the configured index.
    env["PIP_FIND_LINKS"] = " ".join(filter(None, [str(find_links), env.get("PIP_FIND_LINKS")]))
    return env


def _install(install: Install, home: Path, find_links: Path) -> Installed:
    """A fresh environment at ``home`` where ``install``'s command runs as written,
    then the commands its blocks run after it (those serving until stopped aside)."""
    began = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", str(home)])
    # ``pip`` in the environment is this interpreter's pip working on it: quicker than
    # bootstrapping pip into each environment, and the same pip command line.
    pip = home / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{home}/bin/python" "$@"\n')
    pip.chmod(0o755)
    env = _install_env(home, find_links)
    script = "\n".join(
        [install.command, *(line for line in install.followers if line not in SERVING)]
    )
    run = subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", script],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"{run.stdout[-3000:]}\n--- stderr:\n{run.stderr[-5000:]}"
    return Installed(home, env, output, run.returncode, time.monotonic() - began)


INSTALL_COMMANDS = list(documented_installs())


@pytest.fixture(scope="module")
def installed(
    built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Installed]]:
    """Each documented install command, run in a fresh environment of its own, two
    at a time, with the built wheel offered through ``PIP_FIND_LINKS``."""
    find_links = tmp_path_factory.mktemp("find_links")
    shutil.copy(built.wheel, find_links)  # the wheel only: no sdist to build instead
    installs = documented_installs()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            command: pool.submit(_install, install, tmp_path_factory.mktemp("venv_doc"), find_links)
            for command, install in installs.items()
            if command in INSTALLS
        }
        done = {command: future.result() for command, future in futures.items()}
    print("\ndocumented installs:", ", ".join(f"{c} {i.seconds:.1f}s" for c, i in done.items()))
    yield done


@pytest.mark.parametrize("command", [c for c in INSTALL_COMMANDS if c in INSTALLS])
def test_a_documented_install_runs_and_brings_what_it_says(
    command: str, installed: dict[str, Installed], tmp_path: Path
) -> None:
    """The command, as written, installs the wheel of this source and exactly the
    dependencies its extras name; the commands written after it run too."""
    result = installed[command]
    places = ", ".join(documented_installs()[command].places)
    assert result.returncode == 0, f"{command} ({places}):\n{result.output}"
    wanted, own_modules = INSTALLS[command]
    python = result.home / "bin" / "python"
    out = _run(
        [str(python), "-I", "-c", PROBE, *PROBES, "rocketmq_sync", *own_modules],
        cwd=tmp_path,
        env=result.env,
    )
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["version"] == rocketmq_proto.__version__, probe
    prefix = Path(probe["prefix"]).resolve()
    assert prefix == result.home.resolve()
    found = probe["found"]
    for name in ("rocketmq_sync", *own_modules):
        assert "file" in found[name], (command, name, found[name])
        assert Path(found[name]["file"]).resolve().is_relative_to(prefix), found[name]
    present = {name for name in PROBES if "file" in found[name]}
    assert present == wanted, f"{command}: brought {sorted(present)}, not {sorted(wanted)}"
    if command == "pip install rocketmq-remoting":
        # "no dependency at all"
        assert probe["dists"] == ["rocketmq-remoting"], probe["dists"]


def _page_file(page: str, name: str) -> str:
    """The ```python block of ``page`` that starts with the comment ``# name``."""
    blocks = [f for f in doc_blocks.fences(ROOT / page) if f.language == "python"]
    (block,) = [f for f in blocks if f.lines and f.lines[0].strip() == f"# {name}"]
    return block.code


#: Appended to the guide's gunicorn.conf.py: a log line once a worker has loaded the
#: app (its producer started). SIGTERM waits for every worker's: gunicorn waits its
#: graceful timeout (30 s) for a worker stopped while it boots, whatever the app.
READY_HOOK = """

def post_worker_init(worker):  # added by tests/test_package_broker.py
    worker.log.info("worker %s ready", worker.pid)
"""


def test_the_gunicorn_guide_serves_as_documented(
    installed: dict[str, Installed], rocketmq_cluster: Any, tmp_path: Path
) -> None:
    """docs/guides/gevent-gunicorn.md: in the environment of its install line, its
    app.py and gunicorn.conf.py (the cluster's name server in them, the topic and
    group made unique, a hook logging each worker's readiness added) served by its
    gunicorn command as written; the address comes from ``GUNICORN_CMD_ARGS``, and
    gunicorn's control socket goes to the test's directory (``XDG_RUNTIME_DIR``).
    Each worker answers with the id of a message the brokers hold, and SIGTERM
    stops the server at once and cleanly, the workers' producers closed by the
    documented ``worker_exit`` hook."""
    page = "docs/guides/gevent-gunicorn.md"
    command = "pip install 'gunicorn[gevent]' 'rocketmq-remoting[gevent]'"
    install = documented_installs()[command]
    (serve,) = [line for line in install.followers if line in SERVING]
    assert all(p.startswith(page) for p in install.places)
    namesrv = rocketmq_cluster.namesrv_addr
    app, topics = doc_blocks.unique_names(
        _page_file(page, "app.py").replace(doc_blocks.DOCUMENTED_NAMESRV, namesrv),
        f"gu{uuid.uuid4().hex[:8]}",
    )
    (topic,) = topics
    conf = _page_file(page, "gunicorn.conf.py")
    (workers,) = re.findall(r"^workers = (\d+)", conf, re.M)
    (tmp_path / "app.py").write_text(app, encoding="utf-8")
    (tmp_path / "gunicorn.conf.py").write_text(conf + READY_HOOK, encoding="utf-8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(
        installed[command].env,
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        XDG_RUNTIME_DIR=str(tmp_path),
    )
    log = tmp_path / "gunicorn.log"
    with rocketmq_sync.Admin(namesrv) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        with log.open("wb") as out:
            server = subprocess.Popen(
                ["bash", "-c", f"exec {serve}"],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            ready = _wait_for_workers(server, log, int(workers))
            for i in range(int(workers)):
                answer = _get(f"http://127.0.0.1:{port}/orders/{i}")
                stored = _wait_for_message(admin, answer["msg_id"], topic)
                assert (stored.body, stored.keys) == (str(i).encode(), [str(i)]), stored
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=20) == 0, log.read_text(errors="replace")[-5000:]
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
    output = log.read_text(errors="replace")
    exited = {int(pid) for pid in re.findall(r"Worker exiting \(pid: (\d+)\)", output)}
    assert exited == ready, output[-5000:]
    assert "Traceback" not in output and "Exception" not in output, output[-5000:]


def _wait_for_workers(server: subprocess.Popen[bytes], log: Path, count: int) -> set[int]:
    """The pids of the ``count`` workers, once each has loaded the app (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        output = log.read_text(errors="replace")
        assert server.poll() is None, output[-5000:]
        ready = {int(pid) for pid in re.findall(r"worker (\d+) ready", output)}
        if len(ready) == count:
            return ready
        assert time.monotonic() < deadline, output[-5000:]
        time.sleep(0.2)


def _get(url: str) -> dict[str, Any]:
    """The JSON ``url`` answers (no proxy: 127.0.0.1 only)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _wait_for_message(admin: Any, msg_id: str, topic: str) -> Any:
    """The message the brokers hold under ``msg_id`` (their index comes a moment later)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return admin.view_message(msg_id, topic=topic)
        except rocketmq_proto.QueryNotFoundError:
            assert time.monotonic() < deadline, f"no message {msg_id} after 15 s"
            time.sleep(0.2)


# ------------------------------------------------ the testing guide's session


def _testing_guide_session() -> doc_blocks.Fence:
    """The launcher's shell session in docs/guides/testing.md."""
    fences = doc_blocks.fences(ROOT / "docs" / "guides" / "testing.md")
    (session,) = [f for f in fences if any("rocketmq-cluster up" in line for line in f.lines)]
    return session


TESTING_SESSION = _testing_guide_session()


def test_the_testing_guides_session_starts_a_cluster_runs_pytest_and_stops_it(
    fresh_envs: dict[str, Path], rocketmq_cluster: Any, tmp_path: Path
) -> None:
    """docs/guides/testing.md's ``rocketmq-cluster up``, ``pytest``, ``down``, run
    in the environment with ``[gevent,cli,testing]`` (its ``bin`` first on the
    ``PATH``), in a project holding the guide's test: the cluster it starts serves
    the test through ``ROCKETMQ_NAMESRV``, and ``down`` stops it. The state file of
    ``up`` and ``down`` is kept under the test's own ``XDG_STATE_HOME``."""
    code = TESTING_SESSION.code  # run as written
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_orders.py").write_text(_documented_plugin_test(), encoding="utf-8")
    (project / "test_where.py").write_text(
        "from pathlib import Path\n\n\n"
        "def test_where(rocketmq_cluster):\n"
        "    kind = type(rocketmq_cluster).__name__\n"
        "    Path('where.txt').write_text(f'{kind} {rocketmq_cluster.namesrv_addr}')\n",
        encoding="utf-8",
    )
    bin_dir = fresh_envs["gevent"].parent
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "NAMESRV_ADDR", "ROCKETMQ_NAMESRV", "ROCKETMQ_VERSION")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    state_file = tmp_path / "state" / "rocketmq-py-cluster" / "state.json"
    try:
        run = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", code],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        if state_file.exists():  # the session stopped before its down
            subprocess.run(
                [str(bin_dir / "rocketmq-cluster"), "down"], env=env, timeout=120, check=False
            )
    output = f"{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, output
    assert re.search(r"test_orders.py \.", run.stdout) and "2 passed" in run.stdout, output
    kind, namesrv = (project / "where.txt").read_text().split()
    assert kind == "ExternalCluster" and namesrv != rocketmq_cluster.namesrv_addr, output
    assert f"stopped the cluster at {namesrv}" in run.stdout, output
    assert not state_file.exists()
    host, port = namesrv.rsplit(":", 1)
    # Its name server's port is closed once its process has ended (a moment after
    # ``down`` under load: a CI run once found it still open).
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            break
        assert time.monotonic() < deadline, f"{namesrv} still takes connections after down"
        time.sleep(0.2)
