"""Message body compression: zlib, and LZ4 and Zstandard when their optional libraries
are installed. The algorithm sits in sysFlag bits 8-10."""

from __future__ import annotations

import enum
import zlib
from typing import Any, Final

from rocketmq_proto.wire.errors import CompressionUnavailableError, RemoteProtocolError

__all__ = [
    "CompressionType",
    "compress_body",
    "compression_available",
    "decompress_body",
]

# sysFlag bits (the same values as ``codes.MessageSysFlag``, as plain ints for the hot path).
_COMPRESSED: Final = 0x1
_COMPRESSION_TYPE_MASK: Final = 0x700


class CompressionType(enum.IntEnum):
    """Body compression algorithms (the value sits in sysFlag bits 8-10)."""

    LZ4 = 1
    ZSTD = 2
    ZLIB = 3

    @property
    def sys_flag(self) -> int:
        """The sysFlag bits naming this algorithm (without COMPRESSED)."""
        return int(self) << 8


#: Java's ``compressMsgBodyOverHowmuch`` and ``compressLevel`` defaults.
DEFAULT_COMPRESS_THRESHOLD: Final = 4096
DEFAULT_COMPRESS_LEVEL: Final = 5


def _lz4_frame() -> Any:
    try:
        import lz4.frame
    except ImportError:
        raise CompressionUnavailableError(
            "LZ4 message bodies need the 'lz4' package, which is not installed: "
            "pip install rocketmq-remoting[lz4]"
        ) from None
    return lz4.frame


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise CompressionUnavailableError(
            "Zstandard message bodies need the 'zstandard' package, which is not installed: "
            "pip install rocketmq-remoting[zstd]"
        ) from None
    return zstandard


def _compression_of(sys_flag: int) -> CompressionType:
    value = (sys_flag & _COMPRESSION_TYPE_MASK) >> 8
    if value == 0:  # written before compression types existed (Java 4.x, Go): zlib
        return CompressionType.ZLIB
    try:
        return CompressionType(value)
    except ValueError:
        raise RemoteProtocolError(
            f"sysFlag {sys_flag:#x} names unknown compression type {value}"
        ) from None


def compress_body(
    body: bytes,
    level: int = DEFAULT_COMPRESS_LEVEL,
    threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    *,
    compression: CompressionType = CompressionType.ZLIB,
) -> tuple[bytes, int]:
    """Compress a single message's body as Java's producer does, when that pays.

    Bodies shorter than ``threshold`` are returned unchanged with flag bits 0. Longer
    ones are compressed (zlib by default, at ``level``; LZ4 and Zstandard need their
    optional libraries) and returned with the sysFlag bits to OR into the send header:
    COMPRESSED (0x1) plus the algorithm's type bits (Java 5.x's ``CompressionType``
    in bits 8-10: LZ4 0x100, ZSTD 0x200, ZLIB 0x300; Java 4.x and Go set 0x1 alone,
    which every reader also takes as zlib). Unlike Java, a body that does not get
    smaller (random or already compressed data) is returned unchanged with flag bits 0:
    so a body of exactly the maximum message size is never pushed over the broker's
    limit by compression. Batches are never compressed. A body of :data:`SAMPLE_OVER`
    bytes or more whose samples do not compress is not compressed at all: the
    whole would not be smaller either (Java compresses it whole, and sends the
    larger result).
    """
    if len(body) < threshold:
        return body, 0
    if len(body) >= SAMPLE_OVER and _incompressible(body, compression, level):
        return body, 0
    data = _compress(body, compression, level)
    if len(data) >= len(body):
        return body, 0
    return data, _COMPRESSED | compression.sys_flag


#: A body this long or longer is first judged by samples (:func:`_incompressible`).
SAMPLE_OVER: Final = 64 * 1024
#: Bytes in each of the three samples.
_SAMPLE: Final = 4096
#: Samples that compress to this share of their size or more: the body would not
#: compress (random bytes, or already compressed: an image, a zip, encrypted data).
_INCOMPRESSIBLE: Final = 0.97


def _incompressible(body: bytes, compression: CompressionType, level: int) -> bool:
    """Whether ``body`` looks incompressible: its start, middle and end, 4 KiB each,
    together do not shrink by 3%. Compressing a 1 MiB body of random bytes at zlib's
    default level takes about 20 ms, to be thrown away; the samples take a
    fraction of a millisecond. (A body that is random in all three places and
    compressible elsewhere goes uncompressed: larger, still correct.)"""
    middle = len(body) // 2
    sample = body[:_SAMPLE] + body[middle : middle + _SAMPLE] + body[-_SAMPLE:]
    return len(_compress(sample, compression, level)) >= len(sample) * _INCOMPRESSIBLE


def _compress(body: bytes, compression: CompressionType, level: int) -> bytes:
    if compression is CompressionType.ZLIB:
        return zlib.compress(body, level)
    if compression is CompressionType.LZ4:
        # lz4-java's LZ4FrameInputStream (what Java brokers and clients use) refuses
        # linked blocks; content size is left out as LZ4FrameOutputStream does. Java's
        # LZ4 compressor takes no level.
        return bytes(_lz4_frame().compress(body, block_linked=False, store_size=False))
    return bytes(_zstandard().ZstdCompressor(level=level).compress(body))


def compression_available(compression: CompressionType) -> None:
    """Raise :class:`CompressionUnavailableError` if ``compression``'s library is missing."""
    if compression is CompressionType.LZ4:
        _lz4_frame()
    elif compression is CompressionType.ZSTD:
        _zstandard()


def decompress_body(body: bytes, sys_flag: int) -> bytes:
    """The body uncompressed per ``sys_flag``; unchanged if COMPRESSED (0x1) is not set.

    A corrupt body is a :class:`RemoteProtocolError`; an LZ4 or Zstandard body without
    its library installed is a :class:`CompressionUnavailableError`.
    """
    if not sys_flag & _COMPRESSED:
        return body
    kind = _compression_of(sys_flag)
    if kind is CompressionType.ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error as exc:
            raise RemoteProtocolError(f"message body is not valid ZLIB data: {exc}") from None
    if kind is CompressionType.LZ4:
        lz4_frame = _lz4_frame()
        try:
            return bytes(lz4_frame.decompress(body))
        except (RuntimeError, ValueError) as exc:
            raise RemoteProtocolError(f"message body is not valid LZ4 data: {exc}") from None
    zstd = _zstandard()
    # Java's ZstdOutputStream writes frames without a content size, which
    # ZstdDecompressor.decompress refuses; a decompressobj streams instead, and says by
    # ``eof`` whether the frame was whole.
    unzstd = zstd.ZstdDecompressor().decompressobj()
    try:
        data = bytes(unzstd.decompress(body))
    except zstd.ZstdError as exc:
        raise RemoteProtocolError(f"message body is not valid ZSTD data: {exc}") from None
    if not unzstd.eof:
        raise RemoteProtocolError("message body is not valid ZSTD data: the frame is truncated")
    return data
