"""The documentation runs: every ```python block of README.md and docs/, and the
shell sessions marked to run (the command line's), against the real cluster, and
the site builds with warnings as errors. (The ``pip install`` blocks and the testing
guide's session run in tests/test_package_broker.py, in environments the built wheel
is installed into; tests/test_docs_coverage.py checks that every block of the
documentation is run by one of them, or marked as not run.)

Each block runs in a fresh Python process (a file of its own, run as ``__main__``),
with a time limit, several at once. Before it runs:

- the documented name server address, ``127.0.0.1:9876``, becomes the cluster's;
- the documented topics (``Orders``, ``Payments``, ``Logs``) and groups
  (``orders``, ``billing``, ``audit``, ``workers``, ``payments``), written as string
  literals, get a suffix of the block's own, so blocks running at once share no
  topic or group (consumers of one group would otherwise split each other's
  queues);
- the topics it names are created on both brokers, and their route is waited for.

After the block's code, the test functions it defines (``test_*``, as in the
fuzzing and testing pages) are called, with the cluster's name server as
``rocketmq_namesrv`` where they ask for it (the testing plugin's fixture). A block
fails with its file and line, its exit status and the end of its output.

A shell session (a ```bash block with ``<!-- docs-test: run -->`` on the line right
before its fence) runs as a whole under ``bash -euxo pipefail``, in a directory of
its own, with ``rocketmq`` on the ``PATH`` running this checkout's command line and
``NAMESRV_ADDR`` naming the cluster's name server (which also stands in for the
documented one). The topics it names are made unique to the session (``Orders``
becomes ``Orders_<suffix>`` wherever it stands) and created first, unless the
session creates them itself (``topic create``); so are the groups it gives
(``--group billing``, ``lag billing``). It passes if it exits 0 having run every
``rocketmq`` command it holds.

A block of any kind is left out only with ``<!-- docs-test: skip: REASON -->`` on the
line right before its fence, and only if ``SKIPPED`` below lists it: a new exception
fails ``test_skipped_blocks_are_the_listed_ones`` until it is listed here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync

from . import doc_blocks
from .doc_blocks import DOCUMENTED_NAMESRV, GROUPS, TOPICS, unique_names

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: The blocks not run, of any language: (file, first words of the reason). Keep
#: this short.
SKIPPED = {
    ("docs/guides/security.md", "needs name servers and brokers that speak TLS"),
    ("README.md", "the set-up of a clone"),
    ("CONTRIBUTING.md", "the set-up of a clone"),
    ("CONTRIBUTING.md", "a synopsis of scripts/cluster.py"),
    ("CONTRIBUTING.md", "a contributor's tools"),
    ("CONTRIBUTING.md", "the whole suite"),
}

#: Seconds one block may take (a few wait for a check-back or a redelivery).
BLOCK_TIMEOUT = 120.0
#: Blocks running at once: most of a block's time is waiting for brokers.
PARALLEL = 4

_FENCE = re.compile(r"^```python\s*$")
_ANY_PYTHON_FENCE = re.compile(r"^\s*(```|~~~)\s*\{?\s*\.?(py|python|pycon|python3)\b", re.I)
_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None  # the reason, if marked

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The ```python blocks of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"{rel}:{start + 1}: a ```python block is never closed")
            marker = _SKIP.match(lines[start - 1]) if start > 0 else None
            blocks.append(
                Block(rel, start + 1, "\n".join(body) + "\n", marker.group(1) if marker else None)
            )
        i += 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in extract_blocks(path)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if block.skip is None]

#: Runs a block's file as ``__main__`` (so its tracebacks give the block's own lines),
#: with hypothesis set first for blocks that use it: fewer examples, no time checks
#: (other blocks share the machine's cores meanwhile).
_RUNNER = """
import runpy, sys
script = sys.argv[1]
if "hypothesis" in open(script, encoding="utf-8").read():
    from hypothesis import HealthCheck, settings
    settings.register_profile(
        "docs", max_examples=50, deadline=None, suppress_health_check=list(HealthCheck)
    )
    settings.load_profile("docs")
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""

_EPILOGUE = """

# Added by tests/test_docs_broker.py: the block's own test functions run too, given
# the name server as the testing plugin's ``rocketmq_namesrv`` fixture would be.
import inspect as _inspect
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and callable(_test):
        _wanted = _inspect.signature(_test).parameters
        _test(**({{"rocketmq_namesrv": {namesrv!r}}} if "rocketmq_namesrv" in _wanted else {{}}))
"""


def runnable(block: Block, namesrv: str, suffix: str) -> tuple[str, set[str]]:
    """The code to run for ``block`` against ``namesrv``, and the topics it needs."""
    code, topics = unique_names(block.code.replace(DOCUMENTED_NAMESRV, namesrv), suffix)
    return code + _EPILOGUE.format(namesrv=namesrv), topics


@dataclass
class Outcome:
    returncode: int | None  # None: timed out
    output: str
    seconds: float


def _wait_for_route(admin: Any, topic: str, brokers: int) -> None:
    deadline = time.monotonic() + 30.0
    while True:
        try:
            if len(admin.topic_route(topic).queue_datas) >= brokers:
                return
        except rocketmq_sync.RocketMQError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic}: no route on {brokers} brokers after 30 s")
        time.sleep(0.2)


def _make_topics(admin: Any, topics: set[str], brokers: int, lock: threading.Lock) -> None:
    """Create ``topics`` on every broker and wait for their routes (one creation at a
    time: the brokers register each with the name server)."""
    for topic in sorted(topics):
        with lock:
            admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        _wait_for_route(admin, topic, brokers)


def _run_timed(
    args: list[str], cwd: Path, env: dict[str, str], began: float, stderr_header: str | None
) -> Outcome:
    """Run ``args`` for at most :data:`BLOCK_TIMEOUT` seconds; its output (stderr after
    stdout, under ``stderr_header`` if given) and the seconds since ``began``."""
    try:
        run = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return Outcome(None, text, time.monotonic() - began)
    if stderr_header is None:
        output = run.stdout + run.stderr
    else:
        output = f"{run.stdout}\n--- {stderr_header}:\n{run.stderr}"
    return Outcome(run.returncode, output, time.monotonic() - began)


def _run_block(
    block: Block, namesrv: str, brokers: int, admin: Any, workdir: Path, lock: threading.Lock
) -> Outcome:
    suffix = f"docs{uuid.uuid4().hex[:10]}"
    code, topics = runnable(block, namesrv, suffix)
    began = time.monotonic()
    _make_topics(admin, topics, brokers, lock)
    name = re.sub(r"\W", "_", block.where)
    script = workdir / f"{name}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("NAMESRV_ADDR", "NAMESRV_LOOKUP_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return _run_timed([sys.executable, "-c", _RUNNER, str(script)], workdir, env, began, None)


@pytest.fixture(scope="module")
def outcomes(
    rocketmq_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    """Every runnable block's outcome, run several at once at the module's first test."""
    workdir = tmp_path_factory.mktemp("docs_blocks")
    brokers = len(rocketmq_cluster.brokers)
    lock = threading.Lock()
    with (
        rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr, request_timeout=20.0) as admin,
        ThreadPoolExecutor(max_workers=PARALLEL) as pool,
    ):
        futures = {
            block.where: pool.submit(
                _run_block, block, rocketmq_cluster.namesrv_addr, brokers, admin, workdir, lock
            )
            for block in RUN_BLOCKS
        }
        results = {where: future.result() for where, future in futures.items()}
    slowest = sorted(results.items(), key=lambda item: -item[1].seconds)[:8]
    print("\nslowest documented blocks:", ", ".join(f"{w} {o.seconds:.1f}s" for w, o in slowest))
    yield results


@pytest.mark.broker
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.where for block in RUN_BLOCKS])
def test_documented_code_runs(block: Block, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[block.where]
    if outcome.returncode is None:
        pytest.fail(
            f"{block.where}: still running after {BLOCK_TIMEOUT:g} s\n{outcome.output[-3000:]}",
            pytrace=False,
        )
    if outcome.returncode != 0:
        pytest.fail(
            f"{block.where}: exit status {outcome.returncode} after {outcome.seconds:.1f} s\n"
            f"{outcome.output[-3000:]}",
            pytrace=False,
        )


#: A shell block the test runs: ``<!-- docs-test: run -->`` right before its fence.
_RUN_SHELL = re.compile(r"^<!--\s*docs-test:\s*run\s*-->\s*$")
#: Shell sessions running at once: most of their time is the brokers' and the
#: command line's start-up.
SHELL_PARALLEL = 2


def shell_blocks(path: Path) -> list[Block]:
    """The ```bash blocks of ``path`` marked to be run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    found: list[Block] = []
    for i, line in enumerate(lines):
        if _RUN_SHELL.match(line):
            assert i + 1 < len(lines) and lines[i + 1].strip() == "```bash", (
                f"{rel}:{i + 1}: the run marker must stand right before a ```bash fence"
            )
            end = lines.index("```", i + 2)
            found.append(Block(rel, i + 2, "\n".join(lines[i + 2 : end]) + "\n", None))
    return found


SHELL_BLOCKS = [block for path in DOC_FILES for block in shell_blocks(path)]

#: Where a ``rocketmq`` command starts in a line of a session: at the start, or after
#: a pipe, ``&&``, ``;`` or ``$(``; and a command as ``bash -x`` traces it (``++`` in
#: a command substitution).
_INVOCATION = re.compile(r"(?:^|[|&;(])\s*rocketmq(?=\s|$)")
_TRACED = re.compile(r"^\++ rocketmq(?=\s|$)", re.M)


def shell_session(block: Block, namesrv: str, suffix: str) -> tuple[str, set[str]]:
    """The code to run for the session ``block`` against ``namesrv``, and the
    topics to create before (those it names but does not create itself)."""
    code = block.code.replace(DOCUMENTED_NAMESRV, namesrv)
    for name in TOPICS:
        code = re.sub(rf"\b{name}\b", f"{name}_{suffix}", code)
    groups = "|".join(GROUPS)
    code = re.sub(rf"((?:--group|(?<![\w-])-g|\blag)\s+)({groups})\b", rf"\1\2_{suffix}", code)
    named = {f"{name}_{suffix}" for name in TOPICS if f"{name}_{suffix}" in code}
    created = set(re.findall(r"\btopic create (\S+)", code))
    return code, named - created


def invocations(code: str) -> int:
    """The ``rocketmq`` commands the text of a session holds (comments aside)."""
    return sum(len(_INVOCATION.findall(doc_blocks.command_of(line))) for line in code.splitlines())


def _run_session(
    block: Block, namesrv: str, brokers: int, admin: Any, workdir: Path, lock: threading.Lock
) -> tuple[str, Outcome]:
    code, topics = shell_session(block, namesrv, f"docs{uuid.uuid4().hex[:10]}")
    began = time.monotonic()
    _make_topics(admin, topics, brokers, lock)
    cwd = workdir / re.sub(r"\W", "_", block.where)
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NAMESRV_LOOKUP_URL"}
    env["NAMESRV_ADDR"] = namesrv
    env["PATH"] = f"{workdir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    header = "stderr (bash -x traces each command)"
    return code, _run_timed(["bash", "-euxo", "pipefail", "-c", code], cwd, env, began, header)


@pytest.fixture(scope="module")
def session_outcomes(
    rocketmq_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, Outcome]]:
    """Every marked shell session's code as run, and its outcome, a few at once."""
    assert shutil.which("jq"), "the command line page's sessions read --json output with jq"
    workdir = tmp_path_factory.mktemp("docs_sessions")
    (workdir / "bin").mkdir()
    shim = workdir / "bin" / "rocketmq"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rocketmq_cli "$@"\n')
    shim.chmod(0o755)
    namesrv, brokers = rocketmq_cluster.namesrv_addr, len(rocketmq_cluster.brokers)
    lock = threading.Lock()
    with (
        rocketmq_sync.Admin(namesrv, request_timeout=20.0) as admin,
        ThreadPoolExecutor(max_workers=SHELL_PARALLEL) as pool,
    ):
        futures = {
            block.where: pool.submit(_run_session, block, namesrv, brokers, admin, workdir, lock)
            for block in SHELL_BLOCKS
        }
        results = {where: future.result() for where, future in futures.items()}
    times = ", ".join(f"{where} {o.seconds:.1f}s" for where, (_, o) in results.items())
    print("\ndocumented shell sessions:", times)
    return results


@pytest.mark.broker
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[block.where for block in SHELL_BLOCKS])
def test_documented_shell_session_runs(
    block: Block, session_outcomes: dict[str, tuple[str, Outcome]]
) -> None:
    """A marked shell block runs as a whole under ``bash -euxo pipefail`` (see the
    module's docstring) and exits 0, having run each of its ``rocketmq`` commands."""
    code, outcome = session_outcomes[block.where]
    if outcome.returncode is None:
        pytest.fail(
            f"{block.where}: still running after {BLOCK_TIMEOUT:g} s\n{outcome.output[-3000:]}",
            pytrace=False,
        )
    assert outcome.returncode == 0, (
        f"{block.where}: exit status {outcome.returncode}\n{outcome.output[-5000:]}"
    )
    # Each command ran (bash -x echoes it), the last one too.
    ran = len(_TRACED.findall(outcome.output))
    assert ran >= invocations(code), outcome.output[-5000:]


def _command_paths(group: Any, prefix: str = "") -> list[str]:
    """Every command of the click group ``group``: ``send``, ``topic create``..."""
    paths: list[str] = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            paths += _command_paths(command, f"{prefix}{name} ")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_the_command_line_page_is_sessions_the_tests_run() -> None:
    """Every block of docs/cli.md but the install one (run by the package test) is a
    session the test runs, and each command of the command line runs in one."""
    page = "docs/cli.md"
    fences = doc_blocks.fences(ROOT / page)
    sessions = [block for block in SHELL_BLOCKS if block.path == page]
    installing = [f.line for f in fences if any(doc_blocks.is_pip_line(x) for x in f.lines)]
    assert len(installing) == 1
    assert [b.line for b in sessions] == [f.line for f in fences if f.line not in installing]
    assert len(sessions) >= 8
    from rocketmq_cli import cli

    text = "".join(block.code for block in sessions)
    for path in _command_paths(cli):
        pattern = rf"rocketmq (?:--json )?{path}\b"
        assert re.search(pattern, text), f"no session on {page} runs 'rocketmq {path}'"


def test_sessions_get_unique_names_and_their_commands_are_counted() -> None:
    code, topics = shell_session(
        Block(
            "x.md",
            1,
            "export NAMESRV_ADDR=127.0.0.1:9876\n"
            "rocketmq topic create Payments -q 2   # Orders too\n"
            "seq 3 | rocketmq send Orders && rocketmq bench consume Orders --group bench\n"
            "x=$(rocketmq --json lag billing -t Logs --tag a -g orders)\n",
            None,
        ),
        "10.1.2.3:4",
        "s1",
    )
    assert code.splitlines() == [
        "export NAMESRV_ADDR=10.1.2.3:4",
        "rocketmq topic create Payments_s1 -q 2   # Orders_s1 too",
        "seq 3 | rocketmq send Orders_s1 && rocketmq bench consume Orders_s1 --group bench_s1",
        "x=$(rocketmq --json lag billing_s1 -t Logs_s1 --tag a -g orders_s1)",
    ]
    assert topics == {"Orders_s1", "Logs_s1"}
    assert invocations(code) == 4


def test_every_page_with_code_has_its_blocks_found() -> None:
    """The extraction finds the blocks where they are (a changed fence would hide them)."""
    by_file: dict[str, int] = {}
    for block in ALL_BLOCKS:
        by_file[block.path] = by_file.get(block.path, 0) + 1
    for path in DOC_FILES:
        rel = path.relative_to(ROOT).as_posix()
        # Counted loosely: an indented, ``py``, ``Python`` or ``pycon`` fence, one with
        # attributes, or ``~~~``, would be Python the extraction misses.
        fences = sum(
            1
            for line in path.read_text(encoding="utf-8").splitlines()
            if _ANY_PYTHON_FENCE.match(line)
        )
        assert by_file.get(rel, 0) == fences, f"{rel}: a Python block the test does not run"
    for page in (
        "README.md",
        "docs/quickstart/asyncio.md",
        "docs/quickstart/sync.md",
        "docs/quickstart/gevent.md",
        "docs/guides/producer.md",
    ):
        assert by_file.get(page, 0) >= 1, f"{page} has no python block"


def test_skipped_blocks_are_the_listed_ones() -> None:
    """Skipped blocks of every language (the included CONTRIBUTING.md's too)."""
    marked = {
        (fence.path, fence.reason)
        for fence in doc_blocks.all_fences()
        if fence.marker == "skip" and fence.reason
    }
    python_skips = {(block.path, block.skip) for block in ALL_BLOCKS if block.skip is not None}
    assert python_skips <= marked
    for path, reason in marked:
        assert any(
            path == listed_path and reason.startswith(listed_reason)
            for listed_path, listed_reason in SKIPPED
        ), f"{path}: a block is skipped ({reason!r}) that SKIPPED does not list"
    for listed_path, listed_reason in SKIPPED:
        assert any(
            path == listed_path and reason.startswith(listed_reason) for path, reason in marked
        ), f"SKIPPED lists {listed_path} ({listed_reason!r}), but no block there is skipped so"


def test_names_are_made_unique_per_block() -> None:
    code, topics = runnable(
        Block(
            "x.md",
            1,
            'Producer("127.0.0.1:9876", group="orders")\nMessage("Orders", b"")\n'
            "print('Orders-like', \"OrdersX\")\n",
            None,
        ),
        "10.1.2.3:4",
        "s1",
    )
    assert 'Producer("10.1.2.3:4", group="orders_s1")' in code
    assert 'Message("Orders_s1", b"")' in code
    assert "'Orders-like'" in code and '"OrdersX"' in code
    assert topics == {"Orders_s1"}


def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    for page in ("index.html", "api/sync/index.html", "guides/pop/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # The API reference was generated from the docstrings.
    api = (tmp_path / "site" / "api" / "sync" / "index.html").read_text(encoding="utf-8")
    assert "send_async" in api and "Start a send and return at once" in api
