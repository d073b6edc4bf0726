"""Small local files (broadcasting offsets), read whole and replaced atomically.

The blocking operations behind the :class:`~rocketmq_proto.flows.effects.ReadFile`
and :class:`~rocketmq_proto.flows.effects.WriteFile` effects, written once for every
driver. No core flow calls them (flows yield the effects); a driver runs them
where blocking is harmless: the blocking driver in its own thread, the asyncio
driver in a worker thread, never on its event loop.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rocketmq_proto.wire.errors import LocalStorageError

__all__ = ["read_file", "write_file"]


def read_file(path: str) -> bytes | None:
    """The file's bytes, or ``None`` if it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalStorageError(f"cannot read {path}: {exc}") from exc


def write_file(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a crash leaves the old file or the new one, whole."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LocalStorageError(f"cannot write {path}: {exc}") from exc
