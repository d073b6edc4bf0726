"""Request signing for brokers and name servers with authentication on (ACL).

What Java's ``AclClientRPCHook`` does before each request, and what ACL 1.0
(4.9 to 5.3.2) and ACL 2.0 (5.3+) servers check:

1. add the ext fields ``AccessKey`` and, when the credentials have one,
   ``SecurityToken`` (an empty token is still sent);
2. sort every ext field by key (a ``TreeMap``: Java string order), leave out
   ``Signature``, and concatenate the *values* only;
3. encode that string as UTF-8 and append the body bytes;
4. HMAC-SHA1 it with the secret key (UTF-8), base64 the digest: ``Signature``.

One server difference: 4.9.x brokers leave ``_UNIQUE_KEY_QUERY`` (QUERY_MESSAGE)
out of what they verify, and 5.x brokers do so only for clients announcing a
version of 4.9.3 or older; pass ``unsigned_fields`` to match an older server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from rocketmq_proto.wire.errors import ConfigError

ACCESS_KEY: Final = "AccessKey"
SECRET_KEY: Final = "SecretKey"
SECURITY_TOKEN: Final = "SecurityToken"
SIGNATURE: Final = "Signature"

#: The QUERY_MESSAGE field that 4.9.x brokers never include when they check a signature.
UNIQUE_MSG_QUERY_FLAG: Final = "_UNIQUE_KEY_QUERY"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key and its secret (ACL 2.0: a username and its password).

    Neither ``repr`` nor ``str`` shows the secret key or the security token.
    """

    access_key: str
    secret_key: str
    security_token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.access_key, str) or not self.access_key:
            raise ConfigError("credentials: access_key must be a non-empty string")
        # Java's HMAC (SecretKeySpec) refuses an empty key, so no request could be signed.
        if not isinstance(self.secret_key, str) or not self.secret_key:
            raise ConfigError("credentials: secret_key must be a non-empty string")
        if self.security_token is not None and not isinstance(self.security_token, str):
            raise ConfigError("credentials: security_token must be a string or None")

    def __repr__(self) -> str:
        token = "None" if self.security_token is None else "'***'"
        return (
            f"Credentials(access_key={self.access_key!r}, secret_key='***', security_token={token})"
        )

    __str__ = __repr__


def _java_key_order(key: str) -> bytes:
    # A TreeMap<String, String> orders keys by UTF-16 code units; big-endian
    # UTF-16 bytes compare in exactly that order.
    return key.encode("utf-16-be", "surrogatepass")


def signing_content(
    ext_fields: Mapping[str, str], body: bytes, *, unsigned_fields: Iterable[str] = ()
) -> bytes:
    """The bytes a signature covers: values of ``ext_fields`` sorted by key (without
    ``Signature`` and ``unsigned_fields``), UTF-8, then the body."""
    skip = {SIGNATURE, *unsigned_fields}
    keys = sorted((k for k in ext_fields if k not in skip), key=_java_key_order)
    # Java's String.getBytes(UTF_8) writes '?' for a lone surrogate; so does "replace".
    text = "".join(ext_fields[k] for k in keys).encode("utf-8", "replace")
    return text + bytes(body)


def calculate_signature(data: bytes, secret_key: str) -> str:
    """base64(HMAC-SHA1(secret_key as UTF-8, data)), as Java's ``AclSigner`` computes it."""
    key = secret_key.encode("utf-8", "replace")
    return base64.b64encode(hmac.new(key, data, hashlib.sha1).digest()).decode("ascii")


def sign_request(
    ext_fields: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    *,
    unsigned_fields: Iterable[str] = (),
) -> dict[str, str]:
    """The ext fields to add to a request so that the server accepts it.

    Returns ``AccessKey``, ``SecurityToken`` (if the credentials have one) and
    ``Signature``; the first two are part of what is signed. Call it last, after
    every other ext field is set: a field added later breaks the signature.
    ``unsigned_fields`` names fields the server is known to leave out of its check
    (see :data:`UNIQUE_MSG_QUERY_FLAG`).
    """
    added = {ACCESS_KEY: credentials.access_key}
    if credentials.security_token is not None:
        added[SECURITY_TOKEN] = credentials.security_token
    fields = {**ext_fields, **added}
    content = signing_content(fields, body, unsigned_fields=unsigned_fields)
    added[SIGNATURE] = calculate_signature(content, credentials.secret_key)
    return added
