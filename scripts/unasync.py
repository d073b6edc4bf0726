"""Generate the blocking driver's client classes from the asyncio ones.

The client classes are written once, with ``async``/``await``, in
``rocketmq_asyncio``; ``rocketmq_sync`` gets the same modules with the
coroutine syntax removed and the names of :data:`REPLACEMENTS` replaced. Its
``__init__`` (the export list) is made the same way, with the few lines of
:data:`LINES` replaced whole; ``rocketmq_gevent``'s ``__init__`` is the blocking
one with the lines of :data:`GEVENT_INIT_LINES` replaced. Everything that differs
between the drivers beyond that lives in their ``_shell`` modules, behind the
same names.

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
MODULES = ("_client.py", "_host.py", "__init__.py")

#: Whole words replaced, in code, comments and docstrings alike.
REPLACEMENTS = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "AsyncIterator": "Iterator",
    "Task": "Future",
    "rocketmq_asyncio": "rocketmq_sync",
}

_CLIENT_IMPORT = "from ._client import ("

#: Whole lines replaced, per module: each asyncio line (found exactly once) becomes
#: the lines given, as they are (no word is replaced in them).
LINES: dict[str, dict[str, str]] = {
    "__init__.py": {
        '"""RocketMQ for asyncio: ``async with Producer(...)``, awaitable sends."""': (
            '"""RocketMQ for blocking code and threads: ``with Producer(...)``, '
            'thread-safe clients."""'
        ),
        # The blocking driver also exports its Future (the result of the
        # ``*_async`` methods); ruff sorts ``__all__`` afterwards.
        _CLIENT_IMPORT: "from ._future import Future\n" + _CLIENT_IMPORT,
        "__all__ = [": '__all__ = [\n    "Future",',
    },
}

#: ``rocketmq_gevent/__init__.py``: the blocking driver's, with these lines replaced.
GEVENT_INIT_LINES = {
    '"""RocketMQ for blocking code and threads: ``with Producer(...)``, thread-safe clients."""': (
        '"""RocketMQ for gevent: the blocking API on greenlets and gevent sockets.\n'
        "\n"
        "No monkey-patching is needed (and patching is not harmful): every socket, lock,\n"
        "event and timer used is gevent's own.\n"
        '"""'
    ),
    "from ._future import Future": "from rocketmq_sync._future import Future",
}

#: Coroutine syntax removed: ``async def``, ``async with``, ``async for``, ``await``.
_SYNTAX = re.compile(r"\basync (?=(?:def|with|for)\b)|\bawait ")
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, REPLACEMENTS)) + r")\b")

HEADER = (
    "# Generated from rocketmq_asyncio/{name} by scripts/unasync.py: do not edit.\n"
    "# Edit rocketmq_asyncio/{name}, then run: python scripts/unasync.py\n"
)


def _ruff(args: list[str], source: str, path: str) -> str:
    """``source`` (of ``path``) passed through ruff (imports sorted again, lines
    joined again)."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode not in (0, 1) or not done.stdout:
        raise SystemExit(f"ruff {' '.join(args)} failed on {path}: {done.stderr}")
    return done.stdout


def _convert(line: str) -> str:
    return _WORDS.sub(lambda m: REPLACEMENTS[m.group(1)], _SYNTAX.sub("", line))


def unasync(text: str, name: str) -> str:
    """The blocking module made from the asyncio module ``text``."""
    whole = LINES.get(name, {})
    lines = text.splitlines()
    for line in whole:
        if lines.count(line) != 1:
            raise SystemExit(f"rocketmq_asyncio/{name}: {line!r} is not there exactly once")
    body = "".join(whole[line] + "\n" if line in whole else _convert(line) + "\n" for line in lines)
    source = HEADER.format(name=name) + body
    # What removing the syntax leaves for a linter: unsorted imports (names
    # replaced) and export lists (names added), ``for x in y: yield x`` where
    # ``yield from`` now fits.
    source = _ruff(
        ["check", "--fix", "--unsafe-fixes", "--select", "I,UP028,RUF022", "-q"],
        source,
        f"rocketmq_sync/{name}",
    )
    return _ruff(["format", "-q"], source, f"rocketmq_sync/{name}")


def gevent_init(blocking_init: str) -> str:
    """``rocketmq_gevent/__init__.py`` made from the blocking driver's."""
    lines = blocking_init.splitlines()
    for line in GEVENT_INIT_LINES:
        if lines.count(line) != 1:
            raise SystemExit(f"rocketmq_sync/__init__.py: {line!r} is not there exactly once")
    source = "".join(GEVENT_INIT_LINES.get(line, line) + "\n" for line in lines)
    return _ruff(["check", "--fix", "--select", "I", "-q"], source, "rocketmq_gevent/__init__.py")


def generated() -> dict[str, str]:
    """Each generated module (its path under the repository) and its text."""
    out = {f"rocketmq_sync/{name}": unasync((SOURCE / name).read_text(), name) for name in MODULES}
    out["rocketmq_gevent/__init__.py"] = gevent_init(out["rocketmq_sync/__init__.py"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for path, wanted in generated().items():
        target = ROOT / path
        current = target.read_text() if target.exists() else ""
        if current == wanted:
            continue
        if args.check:
            stale.append(path)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                path,
                f"{path} (generated)",
            )
            sys.stdout.writelines(list(diff)[:40])
        else:
            target.write_text(wanted)
            print(f"wrote {path}")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run: python scripts/unasync.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
