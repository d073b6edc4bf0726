"""Remoting commands and their two header serializations (JSON and ROCKETMQ binary).

A frame on the wire is::

    int32 length            (4 + header length + body length)
    int32 header-length     (high byte: serialize type, low 24 bits: header length)
    header                  (JSON or ROCKETMQ binary)
    body

Encoding is on the hot path of every send, so the encoders avoid generic
serializers: a JSON header is assembled from pre-escaped pieces, and fields that
stay the same across many requests (one producer, one topic) can be encoded once
in an :class:`ExtTemplate` and reused.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

from rocketmq_proto.wire.codes import FLAG_ONEWAY, FLAG_RESPONSE, LanguageCode, SerializeType
from rocketmq_proto.wire.errors import InvalidArgumentError, RemoteProtocolError

#: The ``version`` we announce: the ordinal of Java client release 5.3.3. Versions of
#: 401 and above make name servers answer routes in standard JSON, and keep ACL
#: signing in its current form (servers change what is signed for 399 and below).
DEFAULT_VERSION: Final = 479

#: Java's default ``com.rocketmq.remoting.frameMaxLength``.
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024

_escape_json_str = json.encoder.encode_basestring  # C-accelerated; keeps non-ASCII as is

_INT32: Final = struct.Struct(">i")
_FRAME_PREFIX: Final = struct.Struct(">ii")
_BIN_FIXED: Final = struct.Struct(">hbhii")  # code, language, version, opaque, flag
_BIN_LEN32: Final = struct.Struct(">i")
_BIN_LEN16: Final = struct.Struct(">h")

_LANGUAGE_BY_NAME: Final = {member.name: int(member) for member in LanguageCode}
_LANGUAGE_JSON: Final = {int(member): f'"{member.name}"' for member in LanguageCode}

_key_cache: dict[str, str] = {}


def _json_key(key: str) -> str:
    cached = _key_cache.get(key)
    if cached is None:
        cached = _escape_json_str(key) + ":"
        if len(_key_cache) < 4096:
            _key_cache[key] = cached
    return cached


def _json_ext_fragment(fields: dict[str, str]) -> str:
    return ",".join([_json_key(k) + _escape_json_str(v) for k, v in fields.items()])


def _binary_ext_fragment(fields: dict[str, str]) -> bytes:
    parts: list[bytes] = []
    for k, v in fields.items():
        kb = k.encode()
        vb = v.encode()
        parts.append(_BIN_LEN16.pack(len(kb)) + kb + _BIN_LEN32.pack(len(vb)) + vb)
    return b"".join(parts)


def _check_fields(fields: dict[str, str]) -> None:
    for k, v in fields.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(
                f"header ext field {k!r}: keys and values must be str, got {type(v).__name__}"
            )
        if len(k.encode()) > 0x7FFF:
            raise InvalidArgumentError(f"header ext field key too long: {k[:40]!r}...")


class ExtTemplate:
    """Header ext fields encoded once and reused by many commands.

    A producer sends thousands of messages whose headers share most fields (group,
    topic, default topic, queue count...). Those go in a template; only the
    fields that change per message are encoded per request.
    """

    __slots__ = ("binary", "count", "fields", "json")

    def __init__(self, fields: dict[str, str]) -> None:
        _check_fields(fields)
        self.fields: Final = dict(fields)
        self.json: Final = _json_ext_fragment(self.fields)
        self.binary: Final = _binary_ext_fragment(self.fields)
        self.count: Final = len(self.fields)

    def __repr__(self) -> str:
        return f"ExtTemplate({self.fields!r})"


class RemotingCommand:
    """One request or response of the remoting protocol.

    ``ext_fields`` are the header's string-to-string map; ``template`` optionally
    holds more of them pre-encoded (see :class:`ExtTemplate`). ``opaque`` is
    assigned by the connection when a request is sent.
    """

    __slots__ = (
        "body",
        "code",
        "ext_fields",
        "flag",
        "json_head",
        "language",
        "opaque",
        "remark",
        "serialize_type",
        "template",
        "version",
    )

    def __init__(
        self,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        remark: str | None = None,
        flag: int = 0,
        opaque: int = 0,
        language: int = LanguageCode.PYTHON,
        version: int = DEFAULT_VERSION,
        serialize_type: SerializeType = SerializeType.JSON,
        template: ExtTemplate | None = None,
    ) -> None:
        self.code = code
        self.ext_fields: dict[str, str] = ext_fields if ext_fields is not None else {}
        self.body = body
        self.remark = remark
        self.flag = flag
        self.opaque = opaque
        self.language = language
        self.version = version
        self.serialize_type = serialize_type
        self.template = template
        #: The JSON header already rendered up to (not including) ``flag`` and
        #: ``opaque``, when a factory could do it cheaper than the generic encoder
        #: (the send hot path). It covers code, ext fields, remark, language and
        #: version: whoever changes one of those must reset it to ``None``.
        self.json_head: str | None = None

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    def binary_ext(self) -> bytes:
        """Every ext field as the ROCKETMQ header's map entries (template's first)."""
        ext = _binary_ext_fragment(self.ext_fields) if self.ext_fields else b""
        if self.template is not None and self.template.count:
            ext = self.template.binary + ext
        return ext

    def all_ext_fields(self) -> dict[str, str]:
        """Every ext field, template ones included (the template's come first)."""
        if self.template is None:
            return self.ext_fields
        merged = dict(self.template.fields)
        merged.update(self.ext_fields)
        return merged

    def get(self, key: str, default: str | None = None) -> str | None:
        """An ext field by name."""
        value = self.ext_fields.get(key)
        if value is None and self.template is not None:
            value = self.template.fields.get(key)
        return default if value is None else value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemotingCommand):
            return NotImplemented
        return (
            self.code == other.code
            and self.flag == other.flag
            and self.opaque == other.opaque
            and self.language == other.language
            and self.version == other.version
            and (self.remark or None) == (other.remark or None)
            and self.all_ext_fields() == other.all_ext_fields()
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "response" if self.is_response else "request"
        return (
            f"RemotingCommand({kind} code={self.code}, opaque={self.opaque}, flag={self.flag}, "
            f"remark={self.remark!r}, ext_fields={self.all_ext_fields()!r}, "
            f"body={len(self.body)} bytes)"
        )


# ---------------------------------------------------------------- header encoders


def json_head(
    code: int,
    ext: str,
    language: int = LanguageCode.PYTHON,
    version: int = DEFAULT_VERSION,
    remark: str | None = None,
) -> str:
    """The start of a JSON header: everything but ``flag`` and ``opaque``.

    ``ext`` is the ext fields already rendered as JSON object members.
    """
    lang = _LANGUAGE_JSON.get(language, '"OTHER"')
    rem = "" if remark is None else '"remark":' + _escape_json_str(remark) + ","
    return (
        f'{{"code":{code},"extFields":{{{ext}}},"language":{lang},{rem}'
        f'"serializeTypeCurrentRPC":"JSON","version":{version},'
    )


def encode_json_header(cmd: RemotingCommand) -> bytes:
    """The JSON header of ``cmd``: the same keys Java writes, without ``json.dumps``."""
    head = cmd.json_head
    if head is None:
        ext = _json_ext_fragment(cmd.ext_fields) if cmd.ext_fields else ""
        template = cmd.template
        if template is not None and template.count:
            ext = template.json + "," + ext if ext else template.json
        head = json_head(cmd.code, ext, cmd.language, cmd.version, cmd.remark)
    return f'{head}"flag":{cmd.flag},"opaque":{cmd.opaque}}}'.encode()


def encode_binary_header(cmd: RemotingCommand) -> bytes:
    """The ROCKETMQ binary header of ``cmd``."""
    remark = cmd.remark.encode() if cmd.remark else b""
    ext = cmd.binary_ext()
    try:
        fixed = _BIN_FIXED.pack(cmd.code, cmd.language, cmd.version, cmd.opaque, cmd.flag)
    except struct.error as exc:
        raise InvalidArgumentError(
            f"command does not fit the ROCKETMQ header (code, version or opaque out of range): "
            f"{exc}"
        ) from None
    return b"".join((fixed, _BIN_LEN32.pack(len(remark)), remark, _BIN_LEN32.pack(len(ext)), ext))


def encode_command(cmd: RemotingCommand, serialize_type: int = SerializeType.JSON) -> bytes:
    """A whole frame (length prefix, header-length word, header, body) for ``cmd``."""
    header = encode_binary_header(cmd) if serialize_type else encode_json_header(cmd)
    header_len = len(header)
    if header_len > 0xFFFFFF:
        raise InvalidArgumentError(f"header of {header_len} bytes exceeds the 16 MiB header limit")
    body = cmd.body
    prefix = _FRAME_PREFIX.pack(4 + header_len + len(body), (serialize_type << 24) | header_len)
    if body:
        return b"".join((prefix, header, body))
    return prefix + header


# ---------------------------------------------------------------- header decoders


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RemoteProtocolError(f"JSON header field {name!r} is not an integer: {value!r}")
    return value


def decode_json_header(data: bytes | memoryview) -> RemotingCommand:
    """Parse a JSON header (as Java's fastjson or Go's encoding/json write it)."""
    try:
        obj = json.loads(str(data, "utf-8"))
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"header is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"JSON header is not an object: {type(obj).__name__}")
    if "code" not in obj:
        raise RemoteProtocolError("JSON header has no 'code'")
    code = _as_int(obj["code"], "code")
    opaque = _as_int(obj.get("opaque", 0), "opaque")
    flag = _as_int(obj.get("flag", 0), "flag")
    version = _as_int(obj.get("version", 0) or 0, "version")
    language_raw = obj.get("language", "JAVA")
    if isinstance(language_raw, str):
        language = _LANGUAGE_BY_NAME.get(language_raw, LanguageCode.OTHER)
    else:
        language = _as_int(language_raw, "language")
    remark = obj.get("remark")
    if remark is not None and not isinstance(remark, str):
        raise RemoteProtocolError(f"JSON header 'remark' is not a string: {remark!r}")
    raw_ext = obj.get("extFields")
    ext: dict[str, str] = {}
    if raw_ext is not None:
        if not isinstance(raw_ext, dict):
            raise RemoteProtocolError(f"JSON header 'extFields' is not an object: {raw_ext!r}")
        for k, v in raw_ext.items():
            if v is None:
                continue
            if isinstance(v, str):
                ext[k] = v
            elif isinstance(v, bool):
                ext[k] = "true" if v else "false"
            elif isinstance(v, int | float):
                ext[k] = str(v)
            else:
                raise RemoteProtocolError(f"JSON header ext field {k!r} is not a string: {v!r}")
    return RemotingCommand(
        code,
        ext,
        remark=remark,
        flag=flag,
        opaque=opaque,
        language=language,
        version=version,
        serialize_type=SerializeType.JSON,
    )


def _read_str(data: bytes, pos: int, length: int, end: int, what: str) -> tuple[str, int]:
    if length < 0 or pos + length > end:
        raise RemoteProtocolError(f"ROCKETMQ header: {what} length {length} overruns the header")
    try:
        return data[pos : pos + length].decode(), pos + length
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"ROCKETMQ header: {what} is not valid UTF-8") from None


def decode_binary_header(data: bytes | memoryview) -> RemotingCommand:
    """Parse a ROCKETMQ binary header."""
    data = bytes(data)
    end = len(data)
    if end < 21:
        raise RemoteProtocolError(f"ROCKETMQ header of {end} bytes is shorter than 21")
    code, language, version, opaque, flag = _BIN_FIXED.unpack_from(data, 0)
    (remark_len,) = _BIN_LEN32.unpack_from(data, 13)
    pos = 17
    remark: str | None = None
    if remark_len:
        remark, pos = _read_str(data, pos, remark_len, end, "remark")
    if pos + 4 > end:
        raise RemoteProtocolError("ROCKETMQ header: ext fields length missing")
    (ext_len,) = _BIN_LEN32.unpack_from(data, pos)
    pos += 4
    if ext_len < 0 or pos + ext_len > end:
        raise RemoteProtocolError(
            f"ROCKETMQ header: ext fields length {ext_len} overruns the header"
        )
    ext_end = pos + ext_len
    ext: dict[str, str] = {}
    while pos < ext_end:
        if pos + 2 > ext_end:
            raise RemoteProtocolError("ROCKETMQ header: truncated ext field key length")
        (klen,) = _BIN_LEN16.unpack_from(data, pos)
        key, pos = _read_str(data, pos + 2, klen, ext_end, "ext field key")
        if pos + 4 > ext_end:
            raise RemoteProtocolError("ROCKETMQ header: truncated ext field value length")
        (vlen,) = _BIN_LEN32.unpack_from(data, pos)
        value, pos = _read_str(data, pos + 4, vlen, ext_end, "ext field value")
        ext[key] = value
    if ext_end != end:
        raise RemoteProtocolError(
            f"ROCKETMQ header: {end - ext_end} trailing bytes after the ext fields"
        )
    return RemotingCommand(
        code,
        ext,
        remark=remark,
        flag=flag,
        opaque=opaque,
        language=language,
        version=version,
        serialize_type=SerializeType.ROCKETMQ,
    )


def decode_header(data: bytes | memoryview, serialize_type: int) -> RemotingCommand:
    """Parse a header in the serialize type the frame's header-length word named."""
    if serialize_type == SerializeType.JSON:
        return decode_json_header(data)
    if serialize_type == SerializeType.ROCKETMQ:
        return decode_binary_header(data)
    raise RemoteProtocolError(f"unknown header serialize type {serialize_type}")


class FrameDecoder:
    """Incremental frame parser: bytes in, commands out.

    Accepts data in any chunking; looks at each length prefix once; never buffers
    more than one frame of at most ``max_frame_size`` bytes plus what arrived
    after it. A declared length over the limit is refused before any of the frame
    is kept.
    """

    __slots__ = ("_buf", "_need", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 8:
            raise InvalidArgumentError(f"max_frame_size must be at least 8, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0
        self._need = -1  # frame length once its prefix was read, else -1

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buf = self._buf
        if self._pos and self._pos == len(buf):
            buf.clear()
            self._pos = 0
        buf += data

    def next_frame(self) -> RemotingCommand | None:
        """The next complete frame as a command, or ``None`` if more bytes are needed.

        Raises :class:`RemoteProtocolError` on a malformed frame; the decoder is
        then unusable (the stream has lost its framing).
        """
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        need = self._need
        if need < 0:
            if avail < 4:
                return None
            (need,) = _INT32.unpack_from(buf, pos)
            if need < 4:
                raise RemoteProtocolError(f"frame length {need} is less than 4")
            if need + 4 > self.max_frame_size:
                raise RemoteProtocolError(
                    f"frame of {need + 4} bytes exceeds the maximum frame size "
                    f"{self.max_frame_size}"
                )
            self._need = need
        if avail < need + 4:
            return None
        start = pos + 4
        end = start + need
        (word,) = _INT32.unpack_from(buf, start)
        header_len = word & 0xFFFFFF
        serialize_type = (word >> 24) & 0xFF
        if header_len > need - 4:
            raise RemoteProtocolError(f"header length {header_len} exceeds frame length {need} - 4")
        header_end = start + 4 + header_len
        with memoryview(buf) as view:
            cmd = decode_header(view[start + 4 : header_end], serialize_type)
            if header_end < end:
                cmd.body = bytes(view[header_end:end])
        self._need = -1
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536 and end * 2 > len(buf):
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return cmd
