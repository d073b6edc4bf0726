"""Generate the blocking driver's client classes from the asyncio ones.

The client classes are written once, with ``async``/``await``, in
``rocketmq_asyncio``; ``rocketmq_sync`` gets the same modules with the
coroutine syntax removed and the names of :data:`REPLACEMENTS` replaced.
Everything that differs between the drivers beyond that lives in their
``_shell`` modules, behind the same names.

    python scripts/unasync.py          # write the generated modules
    python scripts/unasync.py --check  # exit 1 if one is out of date (lint runs this)
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "rocketmq_asyncio"
TARGET = ROOT / "rocketmq_sync"

#: The modules written once (in ``rocketmq_asyncio``) and generated for ``rocketmq_sync``.
MODULES = ("_client.py", "_host.py")

#: Whole words replaced, in code, comments and docstrings alike.
REPLACEMENTS = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "AsyncIterator": "Iterator",
    "Task": "Future",
    "rocketmq_asyncio": "rocketmq_sync",
}

#: Coroutine syntax removed: ``async def``, ``async with``, ``async for``, ``await``.
_SYNTAX = re.compile(r"\basync (?=(?:def|with|for)\b)|\bawait ")
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, REPLACEMENTS)) + r")\b")

HEADER = (
    "# Generated from rocketmq_asyncio/{name} by scripts/unasync.py: do not edit.\n"
    "# Edit rocketmq_asyncio/{name}, then run: python scripts/unasync.py\n"
)


def _ruff(args: list[str], source: str, name: str) -> str:
    """``source`` passed through ruff (imports sorted again, lines joined again)."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", f"rocketmq_sync/{name}", "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode not in (0, 1) or not done.stdout:
        raise SystemExit(f"ruff {' '.join(args)} failed on rocketmq_sync/{name}: {done.stderr}")
    return done.stdout


def unasync(text: str, name: str) -> str:
    """The blocking module made from the asyncio module ``text``."""
    lines = [_WORDS.sub(lambda m: REPLACEMENTS[m.group(1)], _SYNTAX.sub("", line)) for line in
             text.splitlines(keepends=True)]  # fmt: skip
    source = HEADER.format(name=name) + "".join(lines)
    # What removing the syntax leaves for a linter: unsorted imports (names
    # replaced), ``for x in y: yield x`` where ``yield from`` now fits.
    source = _ruff(["check", "--fix", "--unsafe-fixes", "--select", "I,UP028", "-q"], source, name)
    return _ruff(["format", "-q"], source, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name in MODULES:
        wanted = unasync((SOURCE / name).read_text(), name)
        target = TARGET / name
        current = target.read_text() if target.exists() else ""
        if current == wanted:
            continue
        if args.check:
            stale.append(name)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                f"rocketmq_sync/{name}",
                f"rocketmq_sync/{name} (generated)",
            )
            sys.stdout.writelines(list(diff)[:40])
        else:
            target.write_text(wanted)
            print(f"wrote rocketmq_sync/{name}")
    if stale:
        print(
            f"out of date: {', '.join('rocketmq_sync/' + n for n in stale)}; "
            "run: python scripts/unasync.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
