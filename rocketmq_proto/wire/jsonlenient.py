"""A JSON reader that also accepts what fastjson writes and JSON does not allow.

RocketMQ servers serialize bodies with Alibaba fastjson, which writes a map's
non-string keys as they are instead of quoting them:

* integer keys, unquoted: ``{"brokerAddrs":{0:"127.0.0.1:10911"}}`` (routes from
  name servers older than 4.9.4, and cluster info from all of them);
* object keys, written as JSON objects: ``{"offsetTable":{{"brokerName":"b",
  "queueId":0,"topic":"t"}:5}}`` (every ``Map<MessageQueue, ...>``: reset-offset
  bodies, consume stats, consumer running info).

:func:`loads` tries :func:`json.loads` first (C speed, and most bodies are
standard JSON) and falls back to a small recursive-descent parser of its own
only when that fails. Both paths decode UTF-8, accept the same grammar for
standard documents (including ``NaN``/``Infinity``, and raw control characters
inside strings, as fastjson's own reader does), and differ only in what the
fallback adds: an object key may be any JSON value. A number key stays a
number; an object key becomes a :class:`FrozenObject` (hashable, read-only,
usable as a mapping) and an array key a tuple, so the result is always a valid
Python dict. Callers turn those keys into domain values (a queue object key
into a ``MessageQueue``, for instance).

Whatever the input, :func:`loads` returns a value or raises
:class:`~rocketmq_proto.RemoteProtocolError` naming the offset of the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from rocketmq_proto.wire.errors import RemoteProtocolError

#: Deepest nesting the fallback parser accepts. RocketMQ bodies nest four to six
#: levels; the bound keeps a hostile body from exhausting the Python stack.
MAX_DEPTH: Final = 64

_WS: Final = re.compile(r"[ \t\n\r]*")
# Scalars are decoded by the stdlib's C scanner (strings with all their escapes,
# numbers, literals); this decoder is only ever asked for one scalar at a time.
_SCALAR: Final = json.JSONDecoder(strict=False)
_SCALAR_START: Final = frozenset('"-0123456789tfnNI')


class FrozenObject(Mapping[Any, Any]):
    """A JSON object used as a map key: an immutable, hashable mapping.

    Equal to any mapping with the same items; nested objects and arrays inside
    it are frozen too (objects to :class:`FrozenObject`, arrays to tuples).
    """

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[Any, Any] | None = None) -> None:
        self._items: dict[Any, Any] = {k: freeze(v) for k, v in (items or {}).items()}
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenObject):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == FrozenObject(other)._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenObject({self._items!r})"


def freeze(value: Any) -> Any:
    """``value`` made hashable: mappings become :class:`FrozenObject`, lists tuples."""
    if isinstance(value, FrozenObject):
        return value
    if isinstance(value, Mapping):
        return FrozenObject(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def loads(data: bytes | bytearray | memoryview | str, *, what: str = "JSON body") -> Any:
    """Parse a JSON body, tolerating fastjson's unquoted and object map keys.

    ``what`` names the body in error messages ("topic route", "cluster info").
    Raises :class:`RemoteProtocolError` for anything that is not (lenient) JSON.
    """
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(
                f"{what}: not UTF-8 at byte offset {exc.start}: {exc.reason}"
            ) from None
    try:
        return json.loads(text, strict=False)
    except RecursionError:
        raise RemoteProtocolError(f"{what}: JSON nested too deeply") from None
    except ValueError:
        # Not standard JSON (or an integer too long for int()): the fallback
        # either accepts it or says precisely where it is wrong.
        pass
    return _parse_fallback(text, what=what)


def dumps(value: Any) -> str:
    """Serialize ``value`` compactly, writing map keys the way fastjson does.

    A string key is quoted; a number key is written bare (``{0:"addr"}``); a key
    that is a mapping, or has a ``to_json_dict()`` method (a ``MessageQueue``),
    is written as a JSON object. Values may be mappings, lists, tuples, sets
    (written as arrays), objects with ``to_json_dict()``, strings, numbers,
    booleans and None. A NaN or infinite float is written ``null``, as fastjson
    writes it. :func:`loads` reads everything this writes.
    """
    parts: list[str] = []
    _dump(value, parts, 0)
    return "".join(parts)


_encode_str = json.encoder.encode_basestring  # keeps non-ASCII as is, like fastjson


def _dump(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None or isinstance(value, (bool, int, float)):
        out.append(_scalar(value))
    elif isinstance(value, Mapping) or hasattr(value, "to_json_dict"):
        mapping = value if isinstance(value, Mapping) else value.to_json_dict()
        out.append("{")
        first = True
        for key, item in mapping.items():
            if not first:
                out.append(",")
            first = False
            if isinstance(key, str):
                out.append(_encode_str(key))
            else:
                _dump(key, out, depth + 1)
            out.append(":")
            _dump(item, out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:  # mixed types: any order will do
                items = list(value)
        out.append("[")
        for index, item in enumerate(items):
            if index:
                out.append(",")
            _dump(item, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"cannot serialize {type(value).__name__} as JSON")


def _scalar(value: bool | int | float | None) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "null"
    return repr(int(value)) if isinstance(value, int) else repr(value)


def _parse_fallback(text: str, *, what: str = "JSON body") -> Any:
    """The fallback parser alone (tests hold it to agree with :func:`json.loads`)."""
    try:
        return _Parser(text, what).parse_document()
    except RecursionError:  # only if the caller's own stack was already nearly full
        raise RemoteProtocolError(f"{what}: JSON nested too deeply") from None


class _Parser:
    __slots__ = ("depth", "pos", "text", "what")

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.pos = 0
        self.depth = 0

    def error(self, message: str, pos: int | None = None) -> RemoteProtocolError:
        at = self.pos if pos is None else pos
        return RemoteProtocolError(f"{self.what}: malformed JSON at offset {at}: {message}")

    def skip_ws(self) -> None:
        match = _WS.match(self.text, self.pos)
        if match is not None:  # always: the pattern matches the empty string
            self.pos = match.end()

    def parse_document(self) -> Any:
        self.skip_ws()
        value = self.parse_value()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.error("unexpected data after the JSON value")
        return value

    def parse_value(self) -> Any:
        text = self.text
        pos = self.pos
        if pos >= len(text):
            raise self.error("unexpected end of input")
        char = text[pos]
        if char == "{":
            return self.parse_object()
        if char == "[":
            return self.parse_array()
        if char in _SCALAR_START:
            try:
                value, end = _SCALAR.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise self.error(exc.msg, exc.pos) from None
            except ValueError as exc:  # int() refused a number with too many digits
                raise self.error(str(exc)) from None
            self.pos = end
            return value
        raise self.error(f"unexpected character {char!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        self.pos += 1

    def parse_object(self) -> dict[Any, Any]:
        self.enter()
        result: dict[Any, Any] = {}
        text = self.text
        self.skip_ws()
        if text.startswith("}", self.pos):
            self.pos += 1
            self.depth -= 1
            return result
        while True:
            if self.pos >= len(text):
                raise self.error("unexpected end of input in an object")
            key = self.parse_value()
            if isinstance(key, (dict, list)):
                key = freeze(key)
            self.skip_ws()
            if not text.startswith(":", self.pos):
                raise self.error("expected ':' after an object key")
            self.pos += 1
            self.skip_ws()
            result[key] = self.parse_value()
            self.skip_ws()
            if text.startswith(",", self.pos):
                self.pos += 1
                self.skip_ws()
                continue
            if text.startswith("}", self.pos):
                self.pos += 1
                self.depth -= 1
                return result
            raise self.error("expected ',' or '}' in an object")

    def parse_array(self) -> list[Any]:
        self.enter()
        result: list[Any] = []
        text = self.text
        self.skip_ws()
        if text.startswith("]", self.pos):
            self.pos += 1
            self.depth -= 1
            return result
        while True:
            result.append(self.parse_value())
            self.skip_ws()
            if text.startswith(",", self.pos):
                self.pos += 1
                self.skip_ws()
                continue
            if text.startswith("]", self.pos):
                self.pos += 1
                self.depth -= 1
                return result
            raise self.error("expected ',' or ']' in an array")


# ------------------------------------------------------------ typed field access
#
# Bodies are validated as they are read: a field of the wrong type is the peer's
# fault and becomes a RemoteProtocolError naming the body and the field. Missing
# fields take Java's defaults (0, false, null), as fastjson leaves them.

_INT_TEXT: Final = re.compile(r"[+-]?[0-9]{1,20}")
_INT_LIMITS: Final = {32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def as_object(value: Any, what: str) -> Mapping[Any, Any]:
    """``value`` if it is a JSON object, else a :class:`RemoteProtocolError`."""
    if isinstance(value, Mapping):
        return value
    raise RemoteProtocolError(f"{what} must be a JSON object, got {_type_name(value)}")


def as_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a JSON array, else a :class:`RemoteProtocolError`."""
    if isinstance(value, list):
        return value
    raise RemoteProtocolError(f"{what} must be a JSON array, got {_type_name(value)}")


def as_str(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    raise RemoteProtocolError(f"{what} must be a string, got {_type_name(value)}")


def as_int(value: Any, what: str, *, bits: int = 32) -> int:
    """A Java ``int`` (``bits=32``) or ``long`` (64) written as a number, or as a
    decimal string (fastjson's BrowserCompatible feature quotes large longs)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
        number = int(value)
    else:
        raise RemoteProtocolError(f"{what} must be an integer, got {_type_name(value)}")
    low, high = _INT_LIMITS[bits]
    if not low <= number <= high:
        raise RemoteProtocolError(f"{what} is out of range for a {bits}-bit integer: {number}")
    return number


def as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RemoteProtocolError(f"{what} must be a boolean, got {_type_name(value)}")


def as_float(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise RemoteProtocolError(f"{what} must be a number, got {_type_name(value)}")


def get_object(obj: Mapping[Any, Any], key: str, what: str) -> Mapping[Any, Any]:
    """Field ``key`` as an object; missing or null gives an empty one."""
    value = obj.get(key)
    return {} if value is None else as_object(value, f"{what}: {key}")


def get_list(obj: Mapping[Any, Any], key: str, what: str) -> list[Any]:
    """Field ``key`` as an array; missing or null gives an empty one."""
    value = obj.get(key)
    return [] if value is None else as_list(value, f"{what}: {key}")


def get_str(obj: Mapping[Any, Any], key: str, what: str) -> str:
    """A required string field."""
    return as_str(obj.get(key), f"{what}: {key}")


def get_opt_str(obj: Mapping[Any, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    return None if value is None else as_str(value, f"{what}: {key}")


def get_int(
    obj: Mapping[Any, Any], key: str, what: str, *, default: int = 0, bits: int = 32
) -> int:
    value = obj.get(key)
    return default if value is None else as_int(value, f"{what}: {key}", bits=bits)


def get_bool(obj: Mapping[Any, Any], key: str, what: str, *, default: bool = False) -> bool:
    value = obj.get(key)
    return default if value is None else as_bool(value, f"{what}: {key}")


def get_float(obj: Mapping[Any, Any], key: str, what: str) -> float:
    """A ``double`` field; missing or null (fastjson's NaN) gives 0.0."""
    value = obj.get(key)
    return 0.0 if value is None else as_float(value, f"{what}: {key}")
