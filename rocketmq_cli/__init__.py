"""``rocketmq``: a command line for Apache RocketMQ clusters, on the blocking driver.

Install it with the ``cli`` extra (click and rich); run ``rocketmq --help``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import cli as cli

#: What the command line needs beyond this package.
_EXTRA_MODULES = ("click", "rich")


def _load() -> Any:
    from . import _stream  # noqa: F401  (registers send, tail and bench)
    from ._app import cli

    return cli


def main() -> None:
    """The console script: ``rocketmq ...``. Without the ``cli`` extra it says so
    (exit status 2) instead of a traceback."""
    try:
        command = _load()
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _EXTRA_MODULES:
            raise
        sys.stderr.write(
            f"rocketmq: the command line needs the 'cli' extra ({missing} is not "
            "installed): pip install 'rocketmq-remoting[cli]'\n"
        )
        raise SystemExit(2) from None
    command(prog_name="rocketmq")


def __getattr__(name: str) -> Any:
    if name == "cli":
        return _load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["cli", "main"]
