"""Java's ``String.hashCode``, which tag codes and sharding keys are computed with."""

from __future__ import annotations

import struct
from collections.abc import Iterable


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode``: 31·h + each UTF-16 code unit, as a signed 32-bit int.

    Characters outside the BMP count as their two surrogate units, as in Java.
    """
    if s.isascii():
        units: Iterable[int] = s.encode("ascii")
    else:
        raw = s.encode("utf-16-be", "surrogatepass")
        units = struct.unpack(f">{len(raw) // 2}H", raw)
    h = 0
    for unit in units:
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h
