"""Every fenced code block of the documentation is run by a test, or marked as not
run; no broker is needed to check it.

The documentation is README.md, the pages of docs/ and the files they include
(docs/contributing.md is CONTRIBUTING.md): see tests/doc_blocks.py. A block is run by

- tests/test_docs_broker.py: a ```python block (each in a process of its own), or
  a ```bash block marked ``<!-- docs-test: run -->`` (a shell session using the
  ``rocketmq`` command line);
- tests/test_package_broker.py: a shell block that installs the package (``pip
  install ...`` lines, each run in a fresh environment with the built wheel, then
  the block's other commands in it), or the testing guide's ``rocketmq-cluster``
  session (run in the environment with the ``testing`` extra).

Otherwise the line right before its fence marks it:

- ``<!-- docs-test: skip: REASON -->``: not run, for the reason given (and
  tests/test_docs_broker.py's ``SKIPPED`` must list it);
- ``<!-- docs-test: output -->``: a ```text block showing what something prints,
  or a picture: nothing in it runs.

So a new block fails ``test_every_block_is_run_or_marked`` until a test runs it
or it says why none does. The ``pip install`` commands written in the text
(`` `pip install 'rocketmq-remoting[otel]'` ``) must be run as well, or listed in
tests/test_package_broker.py's ``NOT_INSTALLED`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import doc_blocks
from . import test_docs_broker as docs_runs
from . import test_package_broker as package_runs


def _runs() -> dict[tuple[str, int], str]:
    """The blocks the tests run, by (file, line of the fence): which test runs it."""
    runs: dict[tuple[str, int], str] = {}
    for block in docs_runs.RUN_BLOCKS:
        runs[(block.path, block.line)] = "test_docs_broker.py::test_documented_code_runs"
    for block in docs_runs.SHELL_BLOCKS:
        runs[(block.path, block.line)] = "test_docs_broker.py::test_documented_shell_session_runs"
    for fence in doc_blocks.pip_fences():
        installs = {doc_blocks.command_of(x) for x in fence.lines if doc_blocks.is_pip_line(x)}
        # The install test runs each install in a fresh environment, then the block's
        # other commands in it (a command that serves until stopped aside: SERVING
        # names the test that runs it there).
        if installs <= set(package_runs.INSTALLS):
            runs[(fence.path, fence.line)] = (
                "test_package_broker.py::test_a_documented_install_runs_and_brings_what_it_says"
            )
    session = package_runs.TESTING_SESSION
    runs[(session.path, session.line)] = (
        "test_package_broker.py::"
        "test_the_testing_guides_session_starts_a_cluster_runs_pytest_and_stops_it"
    )
    return runs


def test_every_block_is_run_or_marked() -> None:
    runs = _runs()
    missing = []
    for fence in doc_blocks.all_fences():
        run_by = runs.get((fence.path, fence.line))
        if fence.marker in ("skip", "output"):
            assert run_by is None, f"{fence.where}: marked {fence.marker}, yet {run_by} runs it"
            continue
        if run_by is None:
            missing.append(f"{fence.where} ({fence.info or 'no language'})")
    assert not missing, (
        "blocks no test runs; run them, or mark them "
        "<!-- docs-test: skip: REASON --> or <!-- docs-test: output -->:\n  " + "\n  ".join(missing)
    )


def test_markers_are_well_placed_and_fit_their_blocks() -> None:
    wrong = [w for page in doc_blocks.pages() for w in doc_blocks.misplaced_markers(page)]
    for fence in doc_blocks.all_fences():
        if fence.marker == "output" and fence.language != "text":
            wrong.append(f"{fence.where}: an output block's fence says ```text")
        if fence.marker == "run" and fence.info != "bash":
            wrong.append(f"{fence.where}: a run marker goes on a ```bash block")
        if fence.marker == "run" and fence.path not in {
            block.path for block in docs_runs.SHELL_BLOCKS
        }:
            wrong.append(f"{fence.where}: sessions of this file are not run")
    assert not wrong, "\n".join(wrong)


def test_every_documented_install_command_is_run_or_says_why_not() -> None:
    documented = package_runs.documented_installs()
    for command, install in documented.items():
        assert command in package_runs.INSTALLS or command in package_runs.NOT_INSTALLED, (
            f"{', '.join(install.places)}: {command!r} is neither run (INSTALLS in "
            "tests/test_package_broker.py, with what it must bring) nor in NOT_INSTALLED"
        )
    stale = (set(package_runs.INSTALLS) | set(package_runs.NOT_INSTALLED)) - set(documented)
    assert not stale, f"no longer documented: {sorted(stale)}"
    for command in package_runs.SERVING:
        assert any(command in i.followers for i in documented.values()), command


def test_the_pages_and_their_blocks_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing finds what a page holds: included files, fences of every kind."""
    pages = {p.relative_to(doc_blocks.ROOT).as_posix() for p in doc_blocks.pages()}
    assert {"README.md", "docs/cli.md", "CONTRIBUTING.md", "CHANGELOG.md"} <= pages
    page = tmp_path / "page.md"
    page.write_text(
        "text\n"
        "```\nplain\n```\n"
        "<!-- docs-test: output -->\n"
        "~~~text\nshown\n~~~\n"
        "- a list item:\n\n"
        "    ```python\n    x = 1\n    ```\n"
        "````markdown\n```python\nnot a block of its own\n```\n````\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(doc_blocks, "ROOT", tmp_path)
    found = doc_blocks.fences(page)
    assert [(f.line, f.language, f.marker) for f in found] == [
        (2, "", None),
        (6, "text", "output"),
        (11, "python", None),
        (14, "markdown", None),
    ]
    assert found[3].lines == ("```python", "not a block of its own", "```")
