"""``rocketmq``: a command line for Apache RocketMQ clusters, on the blocking driver.

Install it with the ``cli`` extra (click and rich); run ``rocketmq --help``.
"""

from __future__ import annotations

from . import _stream  # noqa: F401  (registers send, tail and bench)
from ._app import cli


def main() -> None:
    """The console script: ``rocketmq ...``."""
    cli(prog_name="rocketmq")


__all__ = ["cli", "main"]
