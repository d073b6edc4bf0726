"""The fenced code blocks of the documentation, and the ``docs-test`` markers on them.

The documentation is README.md, every page under docs/, and the files those pages
pull in with a snippet line (``--8<-- "CONTRIBUTING.md"``): the site shows their
blocks as its own. A marker is an HTML comment on the line right before a fence:

- ``<!-- docs-test: run -->``: a ```bash block run as a shell session;
- ``<!-- docs-test: skip: REASON -->``: a block not run, for the reason given;
- ``<!-- docs-test: output -->``: a ```text block that shows what something
  prints, or a picture: there is nothing in it to run.

The modules that run blocks select them with these helpers, and
tests/test_docs_coverage.py checks that every block is run by one of them or
marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The name server address the documentation uses.
DOCUMENTED_NAMESRV = "127.0.0.1:9876"
#: The topics and consumer groups the documentation names, made unique per block
#: by the tests that run blocks.
TOPICS = ("Orders", "Payments", "Logs")
GROUPS = ("orders", "billing", "audit", "workers", "payments", "bench")

_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_MARKER = re.compile(
    r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z]+)\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$"
)
_ANY_MARKER = re.compile(r"^\s*<!--.*docs-test")
_SNIPPET = re.compile(r"""^\s*-{1,3}8<-{1,3}\s*["']([^"']+)["']\s*$""")
#: The kinds of marker, and whether each takes a reason.
MARKERS = {"run": False, "skip": True, "output": False}


@dataclass(frozen=True)
class Fence:
    """A fenced block: where its opening fence is, its info string and its lines."""

    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    info: str  # the info string: ``bash``, ``python``, or empty
    lines: tuple[str, ...]
    marker: str | None  # ``run``, ``skip`` or ``output``
    reason: str | None  # a skip's reason

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def language(self) -> str:
        return self.info.split()[0].lstrip("{.").lower() if self.info else ""

    @property
    def code(self) -> str:
        return "\n".join(self.lines) + "\n"


def pages() -> list[Path]:
    """README.md, the pages of docs/, and the files they include."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in list(found):
        for line in page.read_text(encoding="utf-8").splitlines():
            snippet = _SNIPPET.match(line)
            if snippet:
                included = (ROOT / snippet.group(1)).resolve()
                if included not in found:
                    found.append(included)
    return found


def _rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def fences(path: Path) -> list[Fence]:
    """Every fenced block of ``path`` (``` or ~~~, indented or not, any info string)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = _rel(path)
    found: list[Fence] = []
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        fence = opened.group("fence")
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{rel}:{i + 1}: a fenced block is never closed")
        marker = _MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(
            Fence(
                rel,
                i + 1,
                opened.group("info"),
                tuple(lines[i + 1 : end]),
                marker.group("kind") if marker else None,
                marker.group("reason") if marker else None,
            )
        )
        i = end + 1
    return found


def all_fences() -> list[Fence]:
    return [fence for page in pages() for fence in fences(page)]


def misplaced_markers(path: Path) -> list[str]:
    """The ``docs-test`` comments of ``path`` that are not a known marker right
    before a fence (a marker a blank line separates from its block marks nothing)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = _rel(path)
    wrong: list[str] = []
    for i, line in enumerate(lines):
        if not _ANY_MARKER.match(line):
            continue
        marker = _MARKER.match(line)
        if marker is None or marker.group("kind") not in MARKERS:
            wrong.append(f"{rel}:{i + 1}: not a docs-test marker: {line.strip()}")
        elif MARKERS[marker.group("kind")] != bool(marker.group("reason")):
            wrong.append(f"{rel}:{i + 1}: a reason is wanted for skip, and only for skip")
        elif i + 1 == len(lines) or not _OPEN.match(lines[i + 1]):
            wrong.append(f"{rel}:{i + 1}: a marker must stand right before a fence")
    return wrong


# ------------------------------------------------------------------ pip lines

_PIP = re.compile(r"^pip install\b")
_INLINE_PIP = re.compile(r"`(pip install [^`]+)`")


def command_of(line: str) -> str:
    """A shell line without its trailing comment (`` # ...``) and outer spaces."""
    return re.sub(r"\s+#.*$", "", line).strip()


def is_pip_line(line: str) -> bool:
    return bool(_PIP.match(line.strip()))


def pip_fences() -> list[Fence]:
    """The unmarked shell blocks that install the package: a ``pip install`` line
    first, then perhaps commands to run in what it installed."""
    return [
        fence
        for fence in all_fences()
        if fence.marker is None
        and fence.language in ("", "bash", "sh", "shell", "console")
        and any(is_pip_line(line) for line in fence.lines)
    ]


def inline_pip_commands() -> list[tuple[str, str]]:
    """``pip install`` commands written in the text (`` `pip install x` ``), outside
    blocks: (file:line, command)."""
    found: list[tuple[str, str]] = []
    for page in pages():
        inside = {n for f in fences(page) for n in range(f.line, f.line + len(f.lines) + 2)}
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if number in inside:
                continue
            for command in _INLINE_PIP.findall(line):
                found.append((f"{_rel(page)}:{number}", command.strip()))
    return found


# ------------------------------------------------------------- unique names


def unique_names(code: str, suffix: str) -> tuple[str, set[str]]:
    """``code`` with the documented topics and groups, written as string literals,
    given ``suffix`` (``"Orders"`` -> ``"Orders_<suffix>"``), and the topics it names."""
    names = re.compile(r"""(["'])(""" + "|".join(TOPICS + GROUPS) + r""")\1""")
    topics: set[str] = set()

    def rename(match: re.Match[str]) -> str:
        quote, name = match.groups()
        if name in TOPICS:
            topics.add(f"{name}_{suffix}")
        return f"{quote}{name}_{suffix}{quote}"

    return names.sub(rename, code), topics
