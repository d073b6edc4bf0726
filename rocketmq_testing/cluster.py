"""Start a real local Apache RocketMQ cluster on 127.0.0.1, for tests.

One name server and two master-only broker groups (``broker-a``, ``broker-b``) of
cluster ``DefaultCluster``, run with the system ``java`` from the class path of
``org.apache.rocketmq:rocketmq-namesrv`` and ``rocketmq-broker``, which Maven resolves
from Maven Central once per version into ``~/.cache/rocketmq-py-cluster/<version>/``
(``ROCKETMQ_CLUSTER_CACHE`` moves it). On request, a slave for each group and the 5.x
proxy (``rocketmq-proxy``, resolved into ``<version>/proxy/``) in cluster mode.

From Python::

    with LocalCluster() as cluster:          # or LocalCluster(version="4.9.7")
        cluster.namesrv_addr                 # "127.0.0.1:PORT"
        cluster.brokers                      # {"broker-a": "127.0.0.1:PORT", ...}
        cluster.stop_broker("broker-a")      # failover tests; start_broker() brings it back
        cluster.stop_namesrv()               # outage tests; start_namesrv() restarts it empty

    LocalCluster(namesrv_count=2)            # namesrv_addr is then "127.0.0.1:P1;127.0.0.1:P2"

    with LocalCluster(proxy=True, slaves=True) as cluster:
        cluster.proxy_addr                   # the 5.x proxy's remoting port: a client's namesrv
        cluster.slaves                       # {"broker-a": "127.0.0.1:PORT", ...} (brokerId 1)
        cluster.stop_broker("broker-a-slave")  # slaves are "<group>-slave"

    cluster_from_env()                       # the cluster named by ROCKETMQ_NAMESRV, or None

From a shell::

    rocketmq-cluster up [--version V] [--workdir DIR]   # prints the name server address
    rocketmq-cluster up --proxy --slaves   # ... and then the proxy's address
    rocketmq-cluster status
    rocketmq-cluster down

(``python -m rocketmq_testing.cluster`` is the same command; in a clone of the
source repository, so is ``python scripts/cluster.py``.)

Everything a run writes (configs, stores, logs) lives in one work directory, a
temporary one unless given (removed again by ``stop()`` when temporary, unless
``ROCKETMQ_CLUSTER_KEEP=1``). Each JVM gets that directory's ``<server>/`` as its
``user.home``, so logs are in ``<workdir>/<server>/logs/rocketmqlogs/`` and its stdout in
``<workdir>/<server>/stdout.log``. Set ``ROCKETMQ_CLUSTER_JAVA`` to use another ``java``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

__all__ = [
    "CLUSTER_NAME",
    "DEFAULT_BROKER_NAMES",
    "DEFAULT_STATE_FILE",
    "DEFAULT_VERSION",
    "SHORT_MESSAGE_DELAY_LEVELS",
    "SLAVE_SUFFIX",
    "AclUser",
    "ClusterError",
    "ClusterInfo",
    "ExternalCluster",
    "LocalCluster",
    "TlsOptions",
    "cluster_from_env",
    "main",
    "resolve_classpath",
    "resolve_proxy_classpath",
]

# The newest release whose modules Maven Central serves here complete: 5.5.1 lacks
# rocketmq-namesrv/-client/-srvutil/-filter/-auth jars. 4.9.7 is the 4.x line's
# newest served (4.9.8's namesrv and broker jars are missing).
DEFAULT_VERSION: Final = "5.5.0"
CLUSTER_NAME: Final = "DefaultCluster"
DEFAULT_BROKER_NAMES: Final = ("broker-a", "broker-b")
# Same count as the broker's default (18 levels: consumer retries use level 3 + n),
# but level n waits n seconds, so delay and retry tests finish quickly.
SHORT_MESSAGE_DELAY_LEVELS: Final = " ".join(f"{level}s" for level in range(1, 19))

POM_TEMPLATE: Final = Path(__file__).resolve().parent / "cluster_pom.xml"
#: Where ``up`` records what it started, for ``status`` and ``down`` (the same
#: file whichever directory they run in; ``--state-file`` moves it).
DEFAULT_STATE_FILE: Final = (
    Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    / "rocketmq-py-cluster"
    / "state.json"
)

# JDK 9+ module gates that RocketMQ's direct-buffer and reflection code needs.
_JDK17_FLAGS: Final = (
    "--add-opens", "java.base/java.nio=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-exports", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
)  # fmt: skip
_COMMON_JVM_FLAGS: Final = (
    "-Djava.net.preferIPv4Stack=true",
    "-Dfile.encoding=UTF-8",
    "-XX:+PerfDisableSharedMem",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ExitOnOutOfMemoryError",
)
NAMESRV_JVM_OPTIONS: Final = ("-Xms64m", "-Xmx256m")
BROKER_JVM_OPTIONS: Final = ("-Xms128m", "-Xmx512m", "-XX:MaxDirectMemorySize=1g")
# The proxy's own start script asks for 4 GB; a test proxy needs far less.
PROXY_JVM_OPTIONS: Final = ("-Xms64m", "-Xmx384m", "-XX:MaxDirectMemorySize=256m")
#: A broker group's slave (brokerId 1) is the server "<group><SLAVE_SUFFIX>".
SLAVE_SUFFIX: Final = "-slave"

_NAMESRV_MAIN: Final = "org.apache.rocketmq.namesrv.NamesrvStartup"
_BROKER_MAIN: Final = "org.apache.rocketmq.broker.BrokerStartup"
_PROXY_MAIN: Final = "org.apache.rocketmq.proxy.ProxyStartup"
_NAMESRV_BOOT: Final = re.compile(r"The Name Server boot success")
_BROKER_BOOT: Final = re.compile(r"The broker\[(?P<name>[^,\]]+), (?P<addr>[^\]]+)\] boot success")
_PROXY_BOOT: Final = re.compile(r"rocketmq-proxy startup successfully")
# The proxy makes its system topic at start-up with 3 s name server calls and exits
# if one times out, as it can on a loaded machine: it is started again, this often.
_PROXY_ATTEMPTS: Final = 3

# ACL 2.0 (5.x) plug-ins: the defaults load no metadata provider, so users could not be stored.
_AUTHN_PROVIDER: Final = (
    "org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider"
)
_AUTHN_METADATA: Final = (
    "org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider"
)
_AUTHZ_PROVIDER: Final = (
    "org.apache.rocketmq.auth.authorization.provider.DefaultAuthorizationProvider"
)
_AUTHZ_METADATA: Final = (
    "org.apache.rocketmq.auth.authorization.provider.LocalAuthorizationMetadataProvider"
)

_LOG_TAIL_LINES: Final = 40
_HOST: Final = "127.0.0.1"


class ClusterError(RuntimeError):
    """The cluster could not be resolved, started, probed or stopped."""


@dataclass(frozen=True)
class AclUser:
    """The super user of an authenticating cluster.

    5.x: an ACL 2.0 user (``initAuthenticationUser``, type Super) who is also the
    brokers' inner-client credential. 4.x: an ACL 1.0 ``plain_acl.yml`` account with
    ``admin: true``. Either way a client signs with access key = ``access_key`` and
    secret key = ``secret_key``.
    """

    access_key: str = "rocketmq2"
    secret_key: str = "12345678"

    def __repr__(self) -> str:
        return f"AclUser(access_key={self.access_key!r}, secret_key='***')"


@dataclass(frozen=True)
class TlsOptions:
    """Server certificate and key (PEM; the key unencrypted PKCS#8 unless key_password).

    Brokers run in ``broker_mode`` (``enforcing``: plain connections are closed);
    the name server in ``namesrv_mode`` (``permissive``: TLS and plain both accepted,
    so the brokers' and the launcher's plain name-server connections keep working).
    """

    cert_path: str
    key_path: str
    key_password: str | None = None
    broker_mode: str = "enforcing"
    namesrv_mode: str = "permissive"


class ClusterInfo(Protocol):
    """What a test sees of a cluster, whether launched here or named by ROCKETMQ_NAMESRV."""

    @property
    def namesrv_addr(self) -> str: ...

    @property
    def brokers(self) -> dict[str, str]: ...

    @property
    def version(self) -> str | None: ...

    @property
    def workdir(self) -> Path | None: ...

    def stop_broker(self, name: str, *, kill: bool = False) -> None: ...

    def start_broker(self, name: str) -> None: ...


# --------------------------------------------------------------------------- artifacts


def cache_root() -> Path:
    """Where resolved class paths are kept, one directory per version."""
    explicit = os.environ.get("ROCKETMQ_CLUSTER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rocketmq-py-cluster"


def _check_version(version: str) -> None:
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:[.-][A-Za-z0-9.-]+)?", version):
        raise ClusterError(f"not a RocketMQ release version: {version!r}")


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl  # POSIX: imported here, so that importing the launcher works anywhere

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_jars(root: Path) -> list[Path] | None:
    listing = root / "classpath.txt"
    if not listing.is_file():
        return None
    jars = [root / "lib" / name for name in listing.read_text("utf-8").split()]
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def resolve_classpath(
    version: str = DEFAULT_VERSION, *, cache_dir: Path | None = None, timeout: float = 1800.0
) -> list[Path]:
    """The jars of the name server and broker ``version``, fetched by Maven on first use."""
    _check_version(version)
    root = (cache_dir if cache_dir is not None else cache_root()) / version
    pom = POM_TEMPLATE.read_text("utf-8")
    wanted = {f"rocketmq-namesrv-{version}.jar", f"rocketmq-broker-{version}.jar"}
    return _resolve_jars(root, pom, version, wanted, timeout)


def resolve_proxy_classpath(
    version: str = DEFAULT_VERSION, *, cache_dir: Path | None = None, timeout: float = 1800.0
) -> list[Path]:
    """The jars of the 5.x proxy ``version`` (``org.apache.rocketmq:rocketmq-proxy``),
    fetched by Maven on first use into ``<cache>/<version>/proxy/``."""
    _check_version(version)
    if _major(version) < 5:
        raise ClusterError(f"RocketMQ {version} has no proxy (it came with 5.0)")
    root = (cache_dir if cache_dir is not None else cache_root()) / version / "proxy"
    # The broker's template, naming the proxy artifact instead of the two servers.
    template = POM_TEMPLATE.read_text("utf-8")
    begin, end = template.find("<dependencies>"), template.find("</dependencies>")
    if begin < 0 or end < begin:
        raise ClusterError(f"{POM_TEMPLATE} has no <dependencies> element")
    dependency = (
        "<dependencies>\n    <dependency>\n"
        "      <groupId>org.apache.rocketmq</groupId>\n"
        "      <artifactId>rocketmq-proxy</artifactId>\n"
        "      <version>${rocketmq.version}</version>\n"
        "    </dependency>\n  "
    )
    pom = template[:begin] + dependency + template[end:]
    return _resolve_jars(root, pom, version, {f"rocketmq-proxy-{version}.jar"}, timeout)


def _resolve_jars(
    root: Path, pom_text: str, version: str, wanted: set[str], timeout: float
) -> list[Path]:
    """The runtime class path of ``pom_text`` (with ``rocketmq.version`` = ``version``),
    cached in ``root``; ``wanted``: jar names that must be among it."""
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / ".lock"):
        jars = _cached_jars(root)
        if jars is not None:
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ClusterError("Maven ('mvn') is not on PATH; it fetches the RocketMQ jars")
        pom = root / "pom.xml"
        pom.write_text(pom_text, "utf-8")
        partial = root / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            f"-Drocketmq.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(
                f"Maven did not resolve RocketMQ {version} in {timeout:.0f}s"
            ) from exc
        output = done.stdout.decode("utf-8", "replace")
        names = sorted(p.name for p in partial.glob("*.jar")) if partial.is_dir() else []
        if done.returncode != 0 or not wanted <= set(names):
            raise ClusterError(
                f"Maven could not resolve RocketMQ {version} (exit {done.returncode}):\n"
                + _last_lines(output, _LOG_TAIL_LINES)
            )
        lib = root / "lib"
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        (root / "classpath.txt").write_text("\n".join(names) + "\n", "utf-8")
        return [lib / name for name in names]


# --------------------------------------------------------------------------- probing
# A private, minimal client of the remoting protocol (PROTOCOL.md section 1), only for
# readiness probes: one JSON-header request, one response whose header may be JSON or
# ROCKETMQ binary, depending on the server's rocketmq.serialize.type.

_GET_BROKER_RUNTIME_INFO: Final = 28
_GET_BROKER_CLUSTER_INFO: Final = 106
_GET_ROUTEINFO_BY_TOPIC: Final = 105
_MAX_FRAME: Final = 16 * 1024 * 1024


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"not a host:port address: {addr!r}")
    return host, int(port)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 16))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _client_tls_context() -> ssl.SSLContext:
    # Only proves the server speaks TLS; certificates are the tests' business.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _remoting_call(
    addr: str,
    code: int,
    *,
    timeout: float = 3.0,
    use_tls: bool = False,
    ext_fields: Mapping[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """Send request ``code``; return the response's code, remark and body."""
    header = json.dumps(
        {
            "code": code,
            "language": "PYTHON",
            "version": 401,
            "opaque": 1,
            "flag": 0,
            "extFields": dict(ext_fields or {}),
        },
        separators=(",", ":"),
    ).encode()
    frame = struct.pack(">ii", 4 + len(header), len(header)) + header
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(_split_addr(addr), timeout=timeout))
        if use_tls:
            sock = stack.enter_context(_client_tls_context().wrap_socket(sock))
        sock.sendall(frame)
        (length,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 4 <= length <= _MAX_FRAME:
            raise ClusterError(f"bad frame length {length} from {addr}")
        data = _recv_exact(sock, length)
    word = int.from_bytes(data[:4], "big")
    kind, header_len = word >> 24, word & 0xFFFFFF
    if header_len > length - 4:
        raise ClusterError(f"bad header length {header_len} from {addr}")
    raw_header, body = data[4 : 4 + header_len], data[4 + header_len :]
    if kind == 0:
        decoded = json.loads(raw_header)
        return int(decoded["code"]), str(decoded.get("remark") or ""), body
    if kind == 1:
        # code int16, language int8, version int16, opaque int32, flag int32, remark
        (response_code,) = struct.unpack_from(">h", raw_header, 0)
        (remark_len,) = struct.unpack_from(">i", raw_header, 13)
        remark = raw_header[17 : 17 + max(remark_len, 0)].decode("utf-8", "replace")
        return int(response_code), remark, body
    raise ClusterError(f"unknown serialize type {kind} from {addr}")


def _lenient_json(body: bytes) -> Any:
    # fastjson writes maps with integer keys unquoted: {"brokerAddrs":{0:"..."}}.
    text = body.decode("utf-8")
    return json.loads(re.sub(r"([{,])\s*(-?\d+)\s*:", r'\1"\2":', text))


def _query_cluster(
    namesrv_addr: str, *, timeout: float = 3.0, use_tls: bool = False
) -> dict[str, str]:
    """Broker name -> master address, as the name server knows them now."""
    table = _query_cluster_table(namesrv_addr, timeout=timeout, use_tls=use_tls)
    return {name: addrs[0] for name, addrs in table.items() if 0 in addrs}


def _query_cluster_table(
    namesrv_addr: str, *, timeout: float = 3.0, use_tls: bool = False
) -> dict[str, dict[int, str]]:
    """Broker name -> {broker id: address} (0 the master, 1... the slaves), as the
    name server knows them now."""
    addr = namesrv_addr.split(";", 1)[0]
    code, remark, body = _remoting_call(
        addr, _GET_BROKER_CLUSTER_INFO, timeout=timeout, use_tls=use_tls
    )
    if code != 0:
        raise ClusterError(f"cluster info from {addr} failed: code {code} {remark}")
    if not body:
        return {}
    table = _lenient_json(body).get("brokerAddrTable") or {}
    return {str(name): _broker_addrs(broker) for name, broker in table.items()}


def _broker_addrs(broker_data: Mapping[str, Any]) -> dict[int, str]:
    addrs = broker_data.get("brokerAddrs") or {}
    return {int(broker_id): str(addr) for broker_id, addr in addrs.items() if addr}


def _query_route(addr: str, topic: str, *, timeout: float = 3.0) -> dict[str, dict[int, str]]:
    """GET_ROUTEINFO_BY_TOPIC at ``addr`` (a name server or a 5.x proxy): broker name
    -> {broker id: address} of the topic's route."""
    code, remark, body = _remoting_call(
        addr, _GET_ROUTEINFO_BY_TOPIC, timeout=timeout, ext_fields={"topic": topic}
    )
    if code != 0:
        raise ClusterError(f"route of {topic!r} from {addr} failed: code {code} {remark}")
    try:
        datas = (_lenient_json(body).get("brokerDatas") or []) if body else []
        return {str(data.get("brokerName")): _broker_addrs(data) for data in datas}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ClusterError(f"unreadable route of {topic!r} from {addr}: {exc!r}") from exc


def _query_broker_version(broker_addr: str, *, timeout: float = 3.0) -> str | None:
    try:
        code, _, body = _remoting_call(broker_addr, _GET_BROKER_RUNTIME_INFO, timeout=timeout)
    except (OSError, ClusterError, ValueError):
        return None
    found = re.search(rb'"brokerVersionDesc"\s*:\s*"V(\d+)_(\d+)_(\d+)', body)
    if code != 0 or found is None:
        return None
    return ".".join(part.decode() for part in found.groups())


def _port_answers(addr: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(_split_addr(addr), timeout=timeout):
            return True
    except OSError:
        return False


def _tls_handshake(addr: str, timeout: float = 5.0) -> None:
    with (
        socket.create_connection(_split_addr(addr), timeout=timeout) as raw,
        _client_tls_context().wrap_socket(raw),
    ):
        pass


# --------------------------------------------------------------------------- ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    # The HA port binds every interface, so test the wildcard address; Java sets
    # SO_REUSEADDR on server sockets, so TIME_WAIT leftovers do not count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _pick_ports(broker_count: int, namesrv_count: int = 1) -> tuple[list[int], list[int]]:
    """Name server ports and broker listen ports, with each broker's L-2 and L+1 free."""
    namesrvs, listen, _ = _pick_port_layout(broker_count, namesrv_count)
    return namesrvs, listen


def _pick_port_layout(
    broker_count: int, namesrv_count: int = 1, extra_count: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Name server ports, broker listen ports (each broker's L-2 and L+1 free too) and
    ``extra_count`` more free ports (a proxy's), all from one block."""
    if not 1 <= namesrv_count <= 8:
        raise ClusterError(f"namesrv_count must be 1 to 8, not {namesrv_count}")
    if not 0 <= extra_count <= 8:
        raise ClusterError(f"extra_count must be 0 to 8, not {extra_count}")
    span = 10 * (broker_count + 2)
    low = 10000
    high = _ephemeral_low() - span  # outgoing connections draw from the ephemeral range
    if high <= low + span:
        high = 60000 - span
    rng = random.SystemRandom()
    for _ in range(500):
        base = rng.randrange(low, high)
        listen = [base + 10 * (index + 1) for index in range(broker_count)]
        namesrvs = [base + index for index in range(namesrv_count)]
        extras = [base + 10 * (broker_count + 1) + index for index in range(extra_count)]
        needed = [
            *namesrvs,
            *(port + delta for port in listen for delta in (-2, 0, 1)),
            *extras,
        ]
        if all(_port_is_free(port) for port in needed):
            return namesrvs, listen, extras
    raise ClusterError("found no free block of ports on 127.0.0.1")


# --------------------------------------------------------------------------- files


def _escape_property(text: str, *, key: bool = False) -> str:
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif char == " " and (key or index == 0):
            out.append("\\ ")
        elif key and char in "=:#!":
            out.append("\\" + char)
        elif ord(char) > 0x7E or ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")  # Properties.load reads ISO-8859-1
        else:
            out.append(char)
    return "".join(out)


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    lines = ["# written by the rocketmq_testing cluster launcher"]
    lines += [f"{_escape_property(k, key=True)}={_escape_property(v)}" for k, v in props.items()]
    path.write_text("\n".join(lines) + "\n", "latin-1")


def _property_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _logback_xml(log_name: str) -> str:
    # 4.x loads $ROCKETMQ_HOME/conf/logback_<server>.xml (plain logback 1.2 class names).
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <appender name="MAIN" class="ch.qos.logback.core.FileAppender">
    <file>${{user.home}}/logs/rocketmqlogs/{log_name}.log</file>
    <append>true</append>
    <encoder>
      <pattern>%d{{yyyy-MM-dd HH:mm:ss,SSS}} %-5level %logger{{24}} [%thread] - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="MAIN"/>
  </root>
</configuration>
"""


def _plain_acl_yml(user: AclUser) -> str:
    # 4.x ACL 1.0: $ROCKETMQ_HOME/conf/plain_acl.yml. Values are JSON-quoted (valid YAML).
    return (
        "globalWhiteRemoteAddresses: []\n"
        "accounts:\n"
        f"  - accessKey: {json.dumps(user.access_key)}\n"
        f"    secretKey: {json.dumps(user.secret_key)}\n"
        "    whiteRemoteAddress: ''\n"
        "    admin: true\n"
    )


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.splitlines()[-count:])


def _tail_file(path: Path, count: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            return _last_lines(handle.read().decode("utf-8", "replace"), count)
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command's name (state, parent...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _proc_state(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return None if fields is None else fields[0]


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _pid_runs(pid: int, marker: str) -> bool:
    """Whether ``pid`` is alive and its command line mentions ``marker``.

    Guards a pid read back from a state file against having been reused. A process
    that is exiting has an empty command line (its memory is gone) while it still
    holds its sockets, which it closes next: it still runs, until it is a zombie
    or gone (else ``down`` could return with the name server's port still open).
    """
    fields = _proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    cmdline = _cmdline(pid)
    if cmdline is None:
        return False
    if not cmdline:  # exiting, or a kernel thread (no parent, or kthreadd's child)
        return fields[1] not in _KERNEL_PARENTS
    return marker.encode() in cmdline


#: Parent pids of kernel threads: none (kthreadd itself), and kthreadd.
_KERNEL_PARENTS = ("0", "2")


class _Server:
    """One JVM: a name server, a broker (master or slave) or the proxy."""

    def __init__(
        self,
        name: str,
        role: str,
        port: int,
        home: Path,
        command: list[str],
        pid: int | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.port = port
        self.home = home
        self.command = command
        self.pid = pid
        self.popen: subprocess.Popen[bytes] | None = None
        self.stdout_offset = 0
        self.killed = False  # SIGKILLed: whatever it was writing at exit is suspect

    @property
    def cds_dump(self) -> Path:
        """Where this JVM writes its class-data archive at exit, on a first run."""
        return self.home / f"{self.role}.jsa"

    @property
    def addr(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.home / "stdout.log"

    @property
    def log_path(self) -> Path:
        name = {"namesrv": "namesrv.log", "proxy": "proxy.log"}.get(self.role, "broker.log")
        return self.home / "logs" / "rocketmqlogs" / name

    def launch(
        self, env: Mapping[str, str], jvm_prefix: Sequence[str] = (), *, tied: bool = False
    ) -> None:
        """Start the server; ``tied``: it gets SIGTERM when this process dies (Linux),
        so a test run that is killed leaves no server behind."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "ab") as out:
            self.stdout_offset = out.tell()
            self.popen = subprocess.Popen(
                [self.command[0], *jvm_prefix, *self.command[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env=dict(env),
                start_new_session=True,  # its own process group, detached from our terminal
                # Linux ties a child to the thread that started it: only the main one.
                preexec_fn=_die_with_parent(os.getpid())
                if tied and threading.current_thread() is threading.main_thread()
                else None,
            )
        self.pid = self.popen.pid
        self.killed = False

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and _pid_runs(self.pid, str(self.home))

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def new_output(self) -> str:
        try:
            with open(self.stdout_path, "rb") as handle:
                handle.seek(self.stdout_offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def send(self, sig: signal.Signals) -> None:
        if self.pid is None or not self.alive():
            return
        self.killed = self.killed or sig == signal.SIGKILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def wait_gone(self, deadline: float) -> bool:
        while True:
            if self.popen is not None:
                remaining = deadline - time.monotonic()
                try:
                    self.popen.wait(timeout=max(remaining, 0.0))
                except subprocess.TimeoutExpired:
                    return False
                return True
            if not self.alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def report(self) -> str:
        if self.pid is None:
            return f"----- {self.name}: not started"
        status = "running" if self.alive() else f"exited ({self.exit_code()})"
        return (
            f"----- {self.name} pid={self.pid} {status}; stdout {self.stdout_path} "
            f"(last {_LOG_TAIL_LINES} lines):\n{_tail_file(self.stdout_path)}\n"
            f"----- {self.name} log {self.log_path} (last {_LOG_TAIL_LINES} lines):\n"
            f"{_tail_file(self.log_path)}"
        )


def _stop_servers(servers: Sequence[_Server], timeout: float) -> None:
    """SIGTERM every server's process group, then SIGKILL those still there at the deadline."""
    for server in servers:
        server.send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    stubborn = [server for server in servers if not server.wait_gone(deadline)]
    for server in stubborn:
        server.send(signal.SIGKILL)
    for server in stubborn:
        if not server.wait_gone(time.monotonic() + 10.0):
            raise ClusterError(f"{server.name} (pid {server.pid}) survived SIGKILL")


def _java_executable() -> str:
    explicit = os.environ.get("ROCKETMQ_CLUSTER_JAVA")
    if explicit:
        return explicit
    found = shutil.which("java")
    if found is None:
        raise ClusterError("'java' is not on PATH (or set ROCKETMQ_CLUSTER_JAVA)")
    return found


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


def _keep_workdir() -> bool:
    return _env_flag("ROCKETMQ_CLUSTER_KEEP", False)


def _proxy_tls_pair(cache_dir: Path | None) -> tuple[Path, Path] | None:
    """A self-signed certificate and its key (PEM) for the proxy's gRPC server, made
    once by ``openssl`` into the cache; None without ``openssl``.

    The gRPC server always builds a TLS context, even with TLS off; without files it
    makes a new RSA key at every start, which costs a loaded two-core machine several
    seconds (an EC key made once costs nothing)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    root = (cache_dir if cache_dir is not None else cache_root()) / "proxy-tls"
    cert, key = root / "cert.pem", root / "key.pem"
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / ".lock"):
        if cert.is_file() and key.is_file():
            return cert, key
        new_cert, new_key = root / "cert.pem.tmp", root / "key.pem.tmp"
        command = [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "36500",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(new_key),
            "-out",
            str(new_cert),
        ]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
            # The proxy reads a PKCS#8 key only ("BEGIN PRIVATE KEY").
            if done.returncode != 0 or b"BEGIN PRIVATE KEY" not in new_key.read_bytes():
                return None
            new_key.replace(key)
            new_cert.replace(cert)
        except (OSError, subprocess.SubprocessError):
            return None
        return cert, key


# AppCDS: a JVM's first run dumps the classes it loaded (-XX:ArchiveClassesAtExit);
# later runs map that archive (-XX:SharedArchiveFile) and boot with ~40% less CPU,
# which matters on two shared cores. An archive only fits the JVM build and class
# path it was made with, so its directory is keyed by both; a JVM that finds it
# unusable warns and starts without it. ROCKETMQ_CLUSTER_CDS=0 turns this off.


def _cds_dir(version: str, cache_dir: Path | None, java: str, jars: Sequence[Path]) -> Path | None:
    if not _env_flag("ROCKETMQ_CLUSTER_CDS", True):
        return None
    real_java = Path(java).resolve()
    try:
        stamp = real_java.stat().st_mtime_ns
    except OSError:
        return None
    key = hashlib.sha256(f"{real_java}\0{stamp}\0{os.pathsep.join(map(str, jars))}".encode())
    return (
        (cache_dir if cache_dir is not None else cache_root())
        / version
        / "cds"
        / key.hexdigest()[:16]
    )


def _cds_flags(cds_dir: Path | None, server: _Server) -> list[str]:
    if cds_dir is None:
        return []
    archive = cds_dir / f"{server.role}.jsa"
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}"]
    return [f"-XX:ArchiveClassesAtExit={server.cds_dump}"]


def _writes_cds_archive(cds_dir: Path | None, server: _Server) -> bool:
    """Whether ``server`` was started to write its role's class archive at exit (there
    was none yet): then it must exit in order, not be killed."""
    return cds_dir is not None and not (cds_dir / f"{server.role}.jsa").exists()


def _keep_cds_dump(cds_dir: Path | None, server: _Server) -> None:
    """Adopt a first run's archive if the JVM exited by itself and a JVM can map it.

    A truncated archive crashes the JVM that maps it (SIGBUS), so a candidate is
    tried with -Xshare:on (which refuses any archive it cannot use) before it is kept.
    """
    if cds_dir is None or server.killed or server.alive():
        return
    archive = cds_dir / f"{server.role}.jsa"
    candidate = cds_dir / f".{server.role}.{os.getpid()}.{server.name}.tmp"
    try:
        if archive.exists() or server.cds_dump.stat().st_size == 0:
            return
        cds_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.cds_dump, candidate)
        # The server's own JVM flags and class path, without main class and arguments.
        check = [*server.command[:-3], "-Xshare:on", f"-XX:SharedArchiveFile={candidate}"]
        done = subprocess.run(
            [*check, "-version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        if done.returncode == 0:
            candidate.replace(archive)
    except (OSError, subprocess.SubprocessError):
        pass
    finally:
        candidate.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the cluster


def _coerce_acl(acl: AclUser | bool | None) -> AclUser | None:
    if acl is True:
        return AclUser()
    if acl is False or acl is None:
        return None
    return acl


def _coerce_tls(tls: TlsOptions | tuple[str | Path, str | Path] | None) -> TlsOptions | None:
    if tls is None or isinstance(tls, TlsOptions):
        options = tls
    else:
        options = TlsOptions(cert_path=str(tls[0]), key_path=str(tls[1]))
    if options is None:
        return None
    for path in (options.cert_path, options.key_path):
        if not Path(path).is_file():
            raise ClusterError(f"TLS file not found: {path}")
    for mode in (options.broker_mode, options.namesrv_mode):
        if mode not in ("disabled", "permissive", "enforcing"):
            raise ClusterError(f"unknown TLS mode {mode!r}")
    return TlsOptions(
        cert_path=str(Path(options.cert_path).resolve()),
        key_path=str(Path(options.key_path).resolve()),
        key_password=options.key_password,
        broker_mode=options.broker_mode,
        namesrv_mode=options.namesrv_mode,
    )


class LocalCluster:
    """Name servers and broker groups (a master each, a slave too if asked), and a
    5.x proxy if asked, run as local JVMs.

    ``version``: the RocketMQ release (5.x or 4.x). ``workdir``: where configs, stores
    and logs go (a temporary directory, removed on stop, when None). ``tls``: a
    :class:`TlsOptions` or a (cert path, key path) pair. ``acl``: an :class:`AclUser`
    (or True for the default one). ``serialize_type``: the header format the servers
    answer in, ``"JSON"`` or ``"ROCKETMQ"``. ``extra_broker_props``: broker config
    entries that override or add to the launcher's (e.g. ``messageDelayLevel``).

    ``proxy``: also run the 5.x proxy (``rocketmq-proxy``) in cluster mode against the
    name servers; clients that take ``proxy_addr`` as their name server address reach
    the brokers through it (routes name the proxy as every broker). ``slaves``: each
    group gets a slave (brokerId 1, brokerRole SLAVE, server name
    ``<group>-slave``) that replicates its master over HA. ``slave_read_enable``:
    ``slaveReadEnable`` on every broker. ``slave_acting_master`` (5.x):
    ``enableSlaveActingMaster`` on every broker and ``supportActingMaster`` on the
    name servers, so a slave whose master is gone stands in for it (read-only).
    """

    def __init__(
        self,
        version: str = DEFAULT_VERSION,
        workdir: str | Path | None = None,
        tls: TlsOptions | tuple[str | Path, str | Path] | None = None,
        acl: AclUser | bool | None = None,
        serialize_type: str = "JSON",
        extra_broker_props: Mapping[str, str | int | float | bool] | None = None,
        *,
        broker_names: Sequence[str] = DEFAULT_BROKER_NAMES,
        namesrv_count: int = 1,
        jvm_options: Sequence[str] = (),
        start_timeout: float = 300.0,
        stop_timeout: float = 30.0,
        cache_dir: Path | None = None,
        die_with_parent: bool = True,
        proxy: bool = False,
        slaves: bool = False,
        slave_read_enable: bool = False,
        slave_acting_master: bool = False,
    ) -> None:
        _check_version(version)
        if serialize_type.upper() not in ("JSON", "ROCKETMQ"):
            raise ClusterError(f"serialize_type must be JSON or ROCKETMQ, not {serialize_type!r}")
        if not broker_names or len(set(broker_names)) != len(broker_names):
            raise ClusterError("broker_names must be distinct and not empty")
        if any(name.endswith(SLAVE_SUFFIX) for name in broker_names):
            raise ClusterError(f"a broker name must not end with {SLAVE_SUFFIX!r}")
        if proxy and _major(version) < 5:
            raise ClusterError(f"RocketMQ {version} has no proxy (it came with 5.0)")
        if proxy and (tls is not None or acl not in (None, False)):
            raise ClusterError("the launcher runs a proxy only without TLS and ACL")
        if slave_acting_master and _major(version) < 5:
            raise ClusterError(f"RocketMQ {version} has no slave acting master (5.x has)")
        self.version: str = version
        self.workdir: Path | None = Path(workdir).resolve() if workdir is not None else None
        self.tls = _coerce_tls(tls)
        self.acl = _coerce_acl(acl)
        self.serialize_type = serialize_type.upper()
        self.extra_broker_props = {
            key: _property_value(value) for key, value in (extra_broker_props or {}).items()
        }
        self.broker_names = tuple(broker_names)
        self.namesrv_count = namesrv_count
        self.jvm_options = tuple(jvm_options)
        self.start_timeout = start_timeout
        #: The servers end when this process does (``cluster.py up`` turns it off).
        self.die_with_parent = die_with_parent
        self.stop_timeout = stop_timeout
        self.cache_dir = cache_dir
        #: Every name server's address; ``namesrv_addr`` joins them with ``;`` (the
        #: form clients and brokers accept).
        self.namesrv_addrs: list[str] = []
        self.namesrv_addr = ""
        self.brokers: dict[str, str] = {}
        self.with_proxy = proxy
        self.with_slaves = slaves
        self.slave_read_enable = slave_read_enable
        self.slave_acting_master = slave_acting_master
        #: Broker name -> its slave's address (``slaves=True``); the slave's server
        #: name, for :meth:`stop_broker` and the like, is ``<broker name>-slave``.
        self.slaves: dict[str, str] = {}
        #: The proxy's remoting address (``proxy=True``): give it to clients as their
        #: name server address. ``proxy_grpc_addr``: its gRPC port.
        self.proxy_addr: str | None = None
        self.proxy_grpc_addr: str | None = None
        self.startup_seconds: float | None = None
        self._owns_workdir = workdir is None
        self._namesrvs: list[_Server] = []
        self._brokers: dict[str, _Server] = {}
        self._slaves: dict[str, _Server] = {}  # by broker name
        self._proxy: _Server | None = None
        self._cds: Path | None = None
        self._proxy_cds: Path | None = None
        self._exit_hook = False

    # ----- public API

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LocalCluster(version={self.version!r}, namesrv_addr={self.namesrv_addr!r}, "
            f"brokers={self.brokers!r}, slaves={self.slaves!r}, "
            f"proxy_addr={self.proxy_addr!r}, workdir={str(self.workdir)!r})"
        )

    def start(self) -> None:
        """Start the name servers and masters, then (once the masters are registered,
        so a slave finds its master in its first registration's answer) the slaves
        and the proxy; return once every broker is registered and the proxy serves
        routes."""
        if self._namesrvs:
            raise ClusterError("this cluster was already started")
        jars = resolve_classpath(self.version, cache_dir=self.cache_dir)
        proxy_jars = (
            resolve_proxy_classpath(self.version, cache_dir=self.cache_dir)
            if self.with_proxy
            else None
        )
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="rocketmq-py-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        deadline = began + self.start_timeout
        try:
            self._prepare(jars, proxy_jars)
            for server in self._namesrvs:
                self._launch(server)
            for server in self._namesrvs:
                self._wait_boot(server, _NAMESRV_BOOT, deadline)
            for server in self._brokers.values():
                self._launch(server)
            for server in self._brokers.values():
                self._wait_boot(server, _BROKER_BOOT, deadline)
            self._wait_registered(self.brokers, deadline)
            for server in [*self._slaves.values(), *([self._proxy] if self._proxy else [])]:
                self._launch(server)
            for server in self._slaves.values():
                self._wait_boot(server, _BROKER_BOOT, deadline)
            self._wait_registered({s.name: s.addr for s in self._slaves.values()}, deadline)
            if self.tls is not None and self.tls.broker_mode != "disabled":
                for addr in [*self.brokers.values(), *self.slaves.values()]:
                    _tls_handshake(addr)
            if self._proxy is not None:
                self._wait_proxy(self._proxy, deadline)
        except BaseException as exc:
            report = self._report()
            self._kill_all()
            if not isinstance(exc, Exception):
                raise
            raise ClusterError(
                f"RocketMQ {self.version} cluster failed to start: {exc}\n"
                f"(work directory kept: {self.workdir})\n{report}"
            ) from exc
        self.startup_seconds = time.monotonic() - began
        atexit.register(self._stop_at_exit)
        self._exit_hook = True

    def stop(self, timeout: float | None = None) -> None:
        """Stop the proxy and brokers, then the name servers (SIGTERM, SIGKILL after
        ``timeout``). A cluster whose work directory is removed next is killed at
        once, but for a JVM still to write its class archive at exit: a broker's
        orderly shutdown takes 10-20 s and keeps nothing that outlives the cluster."""
        limit = self.stop_timeout if timeout is None else timeout
        discarded = self._owns_workdir and self.workdir is not None and not _keep_workdir()
        try:
            if discarded:
                for server in self._servers():
                    if not _writes_cds_archive(self._cds_of(server), server):
                        server.send(signal.SIGKILL)
            _stop_servers(self._servers(namesrvs=False), limit)
            _stop_servers(self._namesrvs, limit)
        finally:
            self._drop_exit_hook()
        for server in self._servers():
            _keep_cds_dump(self._cds_of(server), server)
        if self._owns_workdir and self.workdir is not None and not _keep_workdir():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def detach(self) -> None:
        """Leave the JVMs running when this Python process exits (``cluster.py up``)."""
        self._drop_exit_hook()

    def stop_broker(self, name: str, *, kill: bool = False, timeout: float | None = None) -> None:
        """Stop one broker, a master (``"broker-a"``) or a slave (``"broker-a-slave"``),
        (SIGKILL at once when ``kill``) and wait for the name server to drop it; its
        port and store are kept for :meth:`start_broker`."""
        server = self._broker(name)
        group, _ = self._slot(name)
        if kill:
            server.send(signal.SIGKILL)
            if not server.wait_gone(time.monotonic() + 10.0):
                raise ClusterError(f"{name} (pid {server.pid}) survived SIGKILL")
        else:
            _stop_servers([server], self.stop_timeout if timeout is None else timeout)
            _keep_cds_dump(self._cds, server)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ClusterError, ValueError):
                if server.addr not in self._query_table().get(group, {}).values():
                    return
            time.sleep(0.2)

    def start_broker(self, name: str) -> None:
        """Start a stopped broker (master or slave) again, on the same port and store."""
        server = self._broker(name)
        if server.alive():
            return
        deadline = time.monotonic() + self.start_timeout
        try:
            self._launch(server)
            self._wait_boot(server, _BROKER_BOOT, deadline)
            self._wait_registered({name: server.addr}, deadline)
        except Exception as exc:
            report = server.report()
            _stop_servers([server], 5.0)
            raise ClusterError(f"broker {name} failed to restart: {exc}\n{report}") from exc

    def pause_broker(self, name: str) -> None:
        """Freeze one broker, master or slave (SIGSTOP): its connections stay open and
        nothing answers, as a broker stalled by a long pause or an overloaded host."""
        self._broker(name).send(signal.SIGSTOP)

    def resume_broker(self, name: str) -> None:
        """Let a paused broker run again (SIGCONT)."""
        self._broker(name).send(signal.SIGCONT)

    def pause_namesrv(self, index: int = 0) -> None:
        """Freeze the ``index``-th name server (SIGSTOP): it accepts connections and
        never answers, as a hung server."""
        self._namesrv_server(index).send(signal.SIGSTOP)

    def resume_namesrv(self, index: int = 0) -> None:
        """Let a paused name server run again (SIGCONT)."""
        self._namesrv_server(index).send(signal.SIGCONT)

    def stop_namesrv(self, index: int = 0, *, kill: bool = False) -> None:
        """Stop the ``index``-th name server (SIGKILL at once when ``kill``); its port
        is kept for :meth:`start_namesrv`. Brokers keep running and keep trying it."""
        server = self._namesrv_server(index)
        if kill:
            server.send(signal.SIGKILL)
            if not server.wait_gone(time.monotonic() + 10.0):
                raise ClusterError(f"{server.name} (pid {server.pid}) survived SIGKILL")
        else:
            _stop_servers([server], self.stop_timeout)

    def start_namesrv(self, index: int = 0, *, wait_registered: bool = False) -> None:
        """Start a stopped name server again on the same port. It comes back empty:
        brokers register with it on their next registration round (every 30 s by
        default); ``wait_registered`` waits for that."""
        server = self._namesrv_server(index)
        if server.alive():
            return
        deadline = time.monotonic() + self.start_timeout
        try:
            self._launch(server)
            self._wait_boot(server, _NAMESRV_BOOT, deadline)
            if wait_registered:
                brokers = {s.name: s.addr for s in self._servers(namesrvs=False, proxy=False)}
                self._wait_registered(brokers, deadline, namesrv=server.addr)
        except Exception as exc:
            report = server.report()
            _stop_servers([server], 5.0)
            raise ClusterError(f"{server.name} failed to restart: {exc}\n{report}") from exc

    def is_running(self, name: str) -> bool:
        """Whether the broker ``name`` (a master, or ``"<name>-slave"``), ``"namesrv"``
        (``"namesrv-2"``...) or ``"proxy"`` is alive."""
        for server in [*self._namesrvs, *([self._proxy] if self._proxy else [])]:
            if server.name == name:
                return server.alive()
        return self._broker(name).alive()

    def server_names(self) -> list[str]:
        """Every server of the cluster, for :meth:`is_running`: name servers, masters,
        slaves and the proxy."""
        return [server.name for server in self._servers()]

    def logs(self) -> str:
        """The tail of every server's stdout and log, for a failing test's report."""
        return self._report()

    # ----- state for the command line

    def to_state(self) -> dict[str, Any]:
        servers = self._servers() if self._namesrvs else []
        return {
            "version": self.version,
            "workdir": str(self.workdir),
            "owns_workdir": self._owns_workdir,
            "namesrv_addr": self.namesrv_addr,
            "brokers": dict(self.brokers),
            "slaves": dict(self.slaves),
            "proxy_addr": self.proxy_addr,
            "proxy_grpc_addr": self.proxy_grpc_addr,
            "serialize_type": self.serialize_type,
            "tls": self.tls is not None,
            "acl_access_key": self.acl.access_key if self.acl else None,
            "startup_seconds": self.startup_seconds,
            "cds_dir": str(self._cds) if self._cds is not None else None,
            "proxy_cds_dir": str(self._proxy_cds) if self._proxy_cds is not None else None,
            "servers": {
                server.name: {
                    "role": server.role,
                    "pid": server.pid,
                    "port": server.port,
                    "addr": server.addr,
                    "home": str(server.home),
                    "command": server.command,
                }
                for server in servers
                if server is not None
            },
        }

    @classmethod
    def attach(cls, state: Mapping[str, Any]) -> LocalCluster:
        """A handle on a cluster started by another process, from :meth:`to_state`."""
        cluster = cls(version=str(state["version"]), workdir=str(state["workdir"]))
        cluster._owns_workdir = bool(state.get("owns_workdir"))
        cluster.serialize_type = str(state.get("serialize_type", "JSON"))
        cluster.namesrv_addr = str(state["namesrv_addr"])
        cluster.namesrv_addrs = cluster.namesrv_addr.split(";")
        cluster.brokers = {str(k): str(v) for k, v in state["brokers"].items()}
        cluster.slaves = {str(k): str(v) for k, v in (state.get("slaves") or {}).items()}
        cluster.with_slaves = bool(cluster.slaves)
        cluster.proxy_addr = str(state["proxy_addr"]) if state.get("proxy_addr") else None
        cluster.proxy_grpc_addr = (
            str(state["proxy_grpc_addr"]) if state.get("proxy_grpc_addr") else None
        )
        cluster.with_proxy = cluster.proxy_addr is not None
        cluster._cds = Path(state["cds_dir"]) if state.get("cds_dir") else None
        cluster._proxy_cds = Path(state["proxy_cds_dir"]) if state.get("proxy_cds_dir") else None
        for name, entry in state["servers"].items():
            server = _Server(
                name=str(name),
                role=str(entry["role"]),
                port=int(entry["port"]),
                home=Path(entry["home"]),
                command=[str(part) for part in entry["command"]],
                pid=int(entry["pid"]) if entry.get("pid") else None,
            )
            group = server.name.removesuffix(SLAVE_SUFFIX)
            if server.role == "namesrv":
                cluster._namesrvs.append(server)
            elif server.role == "proxy":
                cluster._proxy = server
            elif server.name != group and group in cluster.slaves:
                cluster._slaves[group] = server
            else:
                cluster._brokers[server.name] = server
        return cluster

    # ----- internals

    @property
    def _v5(self) -> bool:
        return _major(self.version) >= 5

    def _namesrv_server(self, index: int) -> _Server:
        if not 0 <= index < len(self._namesrvs):
            raise ClusterError(f"no name server #{index}: this cluster has {len(self._namesrvs)}")
        return self._namesrvs[index]

    def _broker(self, name: str) -> _Server:
        """The master ``name`` or the slave ``"<group>-slave"``."""
        group, broker_id = self._slot(name)
        return self._brokers[group] if broker_id == 0 else self._slaves[group]

    def _slot(self, name: str) -> tuple[str, int]:
        """The broker group and broker id of the broker server ``name``."""
        if name in self._brokers:
            return name, 0
        group = name.removesuffix(SLAVE_SUFFIX)
        if group != name and group in self._slaves:
            return group, 1
        raise ClusterError(f"no broker named {name!r} in this cluster")

    def _servers(self, *, namesrvs: bool = True, proxy: bool = True) -> list[_Server]:
        """The proxy, masters, slaves and name servers, in the order they stop."""
        return [
            *([self._proxy] if proxy and self._proxy is not None else []),
            *self._brokers.values(),
            *self._slaves.values(),
            *(self._namesrvs if namesrvs else []),
        ]

    def _cds_of(self, server: _Server) -> Path | None:
        return self._proxy_cds if server.role == "proxy" else self._cds

    def _rocketmq_home(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "rocketmq-home"

    def _env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in ("ROCKETMQ_SERIALIZE_TYPE", "NAMESRV_ADDR", "ROCKETMQ_HOME", "RMQ_PROXY_HOME")
        }
        env["ROCKETMQ_HOME"] = str(self._rocketmq_home())
        return env

    def _launch(self, server: _Server) -> None:
        server.launch(
            self._env(), _cds_flags(self._cds_of(server), server), tied=self.die_with_parent
        )

    def _query_table(self, namesrv: str | None = None) -> dict[str, dict[int, str]]:
        """Broker name -> {broker id: address} as ``namesrv`` (default: the first one
        running) has them registered."""
        use_tls = self.tls is not None and self.tls.namesrv_mode == "enforcing"
        if namesrv is None:
            alive = [server.addr for server in self._namesrvs if server.alive()]
            namesrv = alive[0] if alive else self.namesrv_addrs[0]
        return _query_cluster_table(namesrv, use_tls=use_tls)

    def _jvm_flags(self, role: str, home: Path) -> list[str]:
        flags = [
            *_JDK17_FLAGS,
            *_COMMON_JVM_FLAGS,
            *{"namesrv": NAMESRV_JVM_OPTIONS, "proxy": PROXY_JVM_OPTIONS}.get(
                role, BROKER_JVM_OPTIONS
            ),
            f"-Duser.home={home}",
            f"-Drocketmq.home.dir={self._rocketmq_home()}",
            f"-Drocketmq.serialize.type={self.serialize_type}",
            # Keep a machine-wide /etc/rocketmq/tls.properties out of the test cluster.
            f"-Dtls.config.file={self._rocketmq_home() / 'conf' / 'tls.properties'}",
        ]
        if self._v5:
            flags.append(f"-Drmq.logback.configurationFile=rmq.{role}.logback.xml")
        if self.tls is None:
            # The servers' default, permissive with a generated self-signed certificate,
            # costs each JVM 6-9 s of start-up on two cores.
            flags.append("-Dtls.server.mode=disabled")
        else:
            mode = self.tls.namesrv_mode if role == "namesrv" else self.tls.broker_mode
            flags += [
                "-Dtls.test.mode.enable=false",
                f"-Dtls.server.mode={mode}",
                f"-Dtls.server.certPath={self.tls.cert_path}",
                f"-Dtls.server.keyPath={self.tls.key_path}",
                "-Dtls.server.need.client.auth=none",
            ]
            if self.tls.key_password is not None:
                flags.append(f"-Dtls.server.keyPassword={self.tls.key_password}")
            if role == "broker" and self.tls.namesrv_mode == "enforcing":
                flags += ["-Dtls.enable=true", "-Dtls.client.authServer=false"]
        return [*flags, *self.jvm_options]

    def _broker_props(
        self, name: str, port: int, store: Path, *, slave: bool = False
    ) -> dict[str, str]:
        """The config of the master of group ``name`` or (``slave``) of its slave.

        A slave learns its master's address and HA address (brokerIP2:haListenPort)
        from the name server's answer to its registration."""
        props = {
            "brokerClusterName": CLUSTER_NAME,
            "brokerName": name,
            "brokerId": "1" if slave else "0",
            "brokerRole": "SLAVE" if slave else "ASYNC_MASTER",
            "flushDiskType": "ASYNC_FLUSH",
            "namesrvAddr": self.namesrv_addr,
            "listenPort": str(port),
            "haListenPort": str(port + 1),
            "brokerIP1": _HOST,
            "brokerIP2": _HOST,
            "storePathRootDir": str(store),
            "storePathCommitLog": str(store / "commitlog"),
            "mappedFileSizeCommitLog": "67108864",
            "maxHashSlotNum": "10000",
            "maxIndexNum": "40000",
            "autoCreateTopicEnable": "true",
            "autoCreateSubscriptionGroup": "true",
            "enablePropertyFilter": "true",
            "transactionCheckInterval": "1000",
            "transactionTimeOut": "1000",
            # 5.x writes the op records of ended transactions ("this half message is
            # done") in batches, 3 to 6 s apart by default. With checks every 1 s,
            # a half message whose check-back answered COMMIT was checked again
            # before its op record landed, and each further COMMIT stored another copy
            # (any client; Java too). A batch of at most 1 byte is written as soon as
            # an op is queued, so ops land before the next check.
            # The interval is the largest int because the 5.5 brokers' op batch
            # thread spins (a core at 100%, for good) once the interval has passed
            # since the last op of any queue with none pending: it waits for the
            # oldest write time of every queue, empty ones too
            # (TransactionalMessageServiceImpl.batchSendOpMessage, seen in 5.5.0 and
            # 5.5.1 with any interval, after a single transaction). Full batches are
            # written at once, whatever the interval (the broker adds it as a long).
            # A wakeup lost to ServiceThread's race would now leave ops unwritten
            # for that long (duplicate commits at check-backs): never seen, a tiny
            # window. 4.x writes each op at once and ignores both keys.
            "transactionOpMsgMaxSize": "1",
            "transactionOpBatchInterval": "2147483647",
            # 2 shared cores: queue waits over the 200 ms default answer "broker busy".
            "waitTimeMillsInSendQueue": "1000",
        }
        if self._v5:
            props["bindAddress"] = _HOST
            props["timerWheelEnable"] = "true"
            # The timer store flushes its wheel, log and checkpoint every second by
            # default: about 5% of a core per idle broker on this project's 2-core
            # machine, its busiest idle thread. A test cluster flushes every 10 s.
            # A stop still saves the checkpoint first; but a slave's copy of it, and
            # what a broker killed with SIGKILL recovers from, may then be 10 s old:
            # up to 10 s of timer messages delivered again after a failover or a kill.
            props["timerFlushIntervalMs"] = "10000"
            # The transaction metrics' flush thread spins at 100% until its interval
            # (10 s by default) first passes since the broker started (it waits only
            # after a flush: TransactionMetricsFlushService): 1 s spins for 1 s, then
            # flushes a small file once a second.
            props["transactionMetricFlushInterval"] = "1000"
        if self.slave_read_enable:
            props["slaveReadEnable"] = "true"
        if self.slave_acting_master:
            props["enableSlaveActingMaster"] = "true"
        if self.acl is not None:
            if self._v5:
                user = json.dumps(
                    {"username": self.acl.access_key, "password": self.acl.secret_key}
                )
                inner = json.dumps(
                    {"accessKey": self.acl.access_key, "secretKey": self.acl.secret_key}
                )
                props.update(
                    {
                        "authenticationEnabled": "true",
                        "authenticationProvider": _AUTHN_PROVIDER,
                        "authenticationMetadataProvider": _AUTHN_METADATA,
                        "authorizationEnabled": "true",
                        "authorizationProvider": _AUTHZ_PROVIDER,
                        "authorizationMetadataProvider": _AUTHZ_METADATA,
                        "initAuthenticationUser": user,
                        "innerClientAuthenticationCredentials": inner,
                    }
                )
            else:
                props["aclEnable"] = "true"
        props.update(self.extra_broker_props)
        return props

    def _prepare(self, jars: Sequence[Path], proxy_jars: Sequence[Path] | None = None) -> None:
        assert self.workdir is not None
        conf = self._rocketmq_home() / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        if not self._v5:
            (conf / "logback_namesrv.xml").write_text(_logback_xml("namesrv"), "utf-8")
            (conf / "logback_broker.xml").write_text(_logback_xml("broker"), "utf-8")
            if self.acl is not None:
                (conf / "plain_acl.yml").write_text(_plain_acl_yml(self.acl), "utf-8")
        java = _java_executable()
        classpath = os.pathsep.join(str(jar) for jar in jars)
        self._cds = _cds_dir(self.version, self.cache_dir, java, jars)
        groups = len(self.broker_names)
        namesrv_ports, broker_ports, proxy_ports = _pick_port_layout(
            2 * groups if self.with_slaves else groups,
            self.namesrv_count,
            2 if proxy_jars is not None else 0,
        )
        self.namesrv_addrs = [f"{_HOST}:{port}" for port in namesrv_ports]
        self.namesrv_addr = ";".join(self.namesrv_addrs)

        for index, port in enumerate(namesrv_ports):
            # The first is "namesrv" (as with one name server), then "namesrv-2"...
            name = "namesrv" if index == 0 else f"namesrv-{index + 1}"
            home = self.workdir / name
            home.mkdir(parents=True, exist_ok=True)
            namesrv_props = {"listenPort": str(port), "bindAddress": _HOST}
            if self._v5:
                namesrv_props["enableControllerInNamesrv"] = "false"
                # 5.x points the name server's own client at <first non-loopback IP>:port
                # and probes it every few seconds; keep every connection on 127.0.0.1.
                namesrv_props["scanAvailableNameSrv"] = "false"
            if self.slave_acting_master:
                namesrv_props["supportActingMaster"] = "true"
            _write_properties(home / "namesrv.properties", namesrv_props)
            command = [
                java,
                *self._jvm_flags("namesrv", home),
                "-cp",
                classpath,
                _NAMESRV_MAIN,
                "-c",
                str(home / "namesrv.properties"),
            ]
            self._namesrvs.append(_Server(name, "namesrv", port, home, command))

        for index, port in enumerate(broker_ports):
            group = self.broker_names[index % groups]
            slave = index >= groups
            name = group + SLAVE_SUFFIX if slave else group
            home = self.workdir / name
            home.mkdir(parents=True, exist_ok=True)
            config = home / "broker.properties"
            props = self._broker_props(group, port, home / "store", slave=slave)
            _write_properties(config, props)
            command = [
                java,
                *self._jvm_flags("broker", home),
                "-cp",
                classpath,
                _BROKER_MAIN,
                "-c",
                str(config),
            ]
            server = _Server(name, "broker", port, home, command)
            if slave:
                self._slaves[group] = server
                self.slaves[group] = server.addr
            else:
                self._brokers[group] = server
                self.brokers[group] = server.addr

        if proxy_jars is not None:
            self._prepare_proxy(java, proxy_jars, *proxy_ports)

    def _prepare_proxy(
        self, java: str, jars: Sequence[Path], remoting_port: int, grpc_port: int
    ) -> None:
        """The proxy in cluster mode: its remoting port (the one clients use, and the
        address its routes name for every broker) and gRPC port on 127.0.0.1."""
        assert self.workdir is not None
        self._proxy_cds = _cds_dir(self.version, self.cache_dir, java, jars)
        home = self.workdir / "proxy"
        home.mkdir(parents=True, exist_ok=True)
        config = {
            "rocketMQClusterName": CLUSTER_NAME,
            "proxyMode": "cluster",
            "proxyName": "local-proxy",
            "namesrvAddr": self.namesrv_addr,
            "remotingListenPort": remoting_port,
            "grpcServerPort": grpc_port,
            "remotingAccessAddr": _HOST,
            "localServeAddr": _HOST,
            # No jstack dump into the log every minute; stop in seconds, not 30.
            "enablePrintJstack": False,
            "grpcShutdownTimeSeconds": 3,
        }
        tls_pair = _proxy_tls_pair(self.cache_dir)
        if tls_pair is not None:
            config["tlsTestModeEnable"] = False
            config["tlsCertPath"], config["tlsKeyPath"] = (str(path) for path in tls_pair)
        path = home / "rmq-proxy.json"
        path.write_text(json.dumps(config, indent=2) + "\n", "utf-8")
        command = [
            java,
            *self._jvm_flags("proxy", home),
            "-cp",
            os.pathsep.join(str(jar) for jar in jars),
            _PROXY_MAIN,
            "-pc",
            str(path),
        ]
        self._proxy = _Server("proxy", "proxy", remoting_port, home, command)
        self.proxy_addr = self._proxy.addr
        self.proxy_grpc_addr = f"{_HOST}:{grpc_port}"

    def _wait_boot(self, server: _Server, pattern: re.Pattern[str], deadline: float) -> None:
        while True:
            if pattern.search(server.new_output()):
                return
            if not server.alive():
                raise ClusterError(f"{server.name} exited (code {server.exit_code()}) before boot")
            if time.monotonic() > deadline:
                raise ClusterError(f"{server.name} printed no boot line in {self.start_timeout}s")
            time.sleep(0.1)

    def _wait_registered(
        self, expected: Mapping[str, str], deadline: float, *, namesrv: str | None = None
    ) -> None:
        """Wait until ``expected`` brokers are registered with ``namesrv`` (default:
        with every name server of the cluster)."""
        for addr in [namesrv] if namesrv is not None else self.namesrv_addrs:
            self._wait_registered_with(addr, expected, deadline)

    def _wait_registered_with(
        self, namesrv: str, expected: Mapping[str, str], deadline: float
    ) -> None:
        """``expected``: broker server name (a master, or ``<group>-slave``) -> address."""
        slots = {name: self._slot(name) for name in expected}
        problem = "no answer yet"
        while True:
            try:
                seen = self._query_table(namesrv)
                problem = f"registered: {seen}"
                if all(
                    seen.get(group, {}).get(broker_id) == expected[name]
                    for name, (group, broker_id) in slots.items()
                ):
                    return
            except (OSError, ClusterError, ValueError) as exc:
                problem = f"cluster info failed: {exc!r}"
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"brokers {sorted(expected)} did not register with {namesrv}; " + problem
                )
            time.sleep(0.2)

    def _wait_proxy(self, proxy: _Server, deadline: float) -> None:
        """Wait for the proxy's boot line, then until it answers a route lookup (of the
        cluster's own topic, which every master registers) naming itself as every
        broker of every group."""
        for attempt in range(1, _PROXY_ATTEMPTS + 1):
            try:
                self._wait_boot(proxy, _PROXY_BOOT, deadline)
                break
            except ClusterError as exc:
                if proxy.alive() or attempt == _PROXY_ATTEMPTS:
                    raise ClusterError(f"{exc} (start {attempt} of {_PROXY_ATTEMPTS})") from exc
                self._launch(proxy)
        groups = set(self.brokers)
        problem = "no answer yet"
        while True:
            try:
                route = _query_route(proxy.addr, CLUSTER_NAME)
                problem = f"route of {CLUSTER_NAME!r}: {route}"
                addrs = {addr for broker in route.values() for addr in broker.values()}
                if set(route) == groups and addrs == {proxy.addr}:
                    return
            except (OSError, ClusterError, ValueError) as exc:
                problem = f"route lookup failed: {exc!r}"
            if not proxy.alive():
                raise ClusterError(f"{proxy.name} exited (code {proxy.exit_code()})")
            if time.monotonic() > deadline:
                raise ClusterError(f"the proxy at {proxy.addr} serves no route; {problem}")
            time.sleep(0.2)

    def _report(self) -> str:
        servers = [*self._namesrvs, *self._servers(namesrvs=False)]
        return "\n".join(server.report() for server in servers)

    def _kill_all(self) -> None:
        with contextlib.suppress(ClusterError):
            _stop_servers(self._servers(), 0.0)
        self._drop_exit_hook()

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10.0)

    def _drop_exit_hook(self) -> None:
        if self._exit_hook:
            atexit.unregister(self._stop_at_exit)
            self._exit_hook = False


# --------------------------------------------------------------------------- existing clusters


@dataclass
class ExternalCluster:
    """A cluster this launcher did not start (``ROCKETMQ_NAMESRV``): nothing to stop."""

    namesrv_addr: str
    brokers: dict[str, str]
    version: str | None = None
    workdir: Path | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def __enter__(self) -> ExternalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def stop_broker(self, name: str, *, kill: bool = False) -> None:
        raise ClusterError("brokers of an external cluster (ROCKETMQ_NAMESRV) cannot be stopped")

    def start_broker(self, name: str) -> None:
        raise ClusterError("brokers of an external cluster (ROCKETMQ_NAMESRV) cannot be started")


def cluster_from_env(timeout: float = 30.0) -> ExternalCluster | None:
    """The cluster at ``$ROCKETMQ_NAMESRV`` (brokers from its cluster info), or None if unset.

    ``$ROCKETMQ_VERSION`` names its version; otherwise a broker is asked.
    """
    namesrv = os.environ.get("ROCKETMQ_NAMESRV", "").strip()
    if not namesrv:
        return None
    deadline = time.monotonic() + timeout
    while True:
        try:
            brokers = _query_cluster(namesrv)
            if brokers:
                break
            problem = "no broker registered"
        except (OSError, ClusterError, ValueError) as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise ClusterError(f"ROCKETMQ_NAMESRV={namesrv}: {problem}")
        time.sleep(0.5)
    version = os.environ.get("ROCKETMQ_VERSION") or _query_broker_version(
        next(iter(brokers.values()))
    )
    return ExternalCluster(
        namesrv_addr=namesrv, brokers=dict(sorted(brokers.items())), version=version
    )


# --------------------------------------------------------------------------- command line


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"unreadable state file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ClusterError(f"unreadable state file {path}")
    return loaded


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    temporary.replace(path)


def _parse_props(pairs: Sequence[str]) -> dict[str, str]:
    props: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClusterError(f"--broker-prop wants KEY=VALUE, not {pair!r}")
        props[key] = value
    return props


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when ``parent`` ends."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def tie() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent ended before the tie was made
            os.kill(os.getpid(), signal.SIGTERM)

    return tie


def _cmd_up(args: argparse.Namespace) -> int:
    state_path = Path(args.state_file)
    old = _load_state(state_path)
    if old is not None:
        attached = LocalCluster.attach(old)
        if any(attached.is_running(name) for name in attached.server_names()):
            print(
                f"a cluster is already up ({old['namesrv_addr']}); run 'down' first",
                file=sys.stderr,
            )
            return 1
    props = _parse_props(args.broker_prop or [])
    if args.short_delay_levels:
        props.setdefault("messageDelayLevel", SHORT_MESSAGE_DELAY_LEVELS)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert or args.tls_key else None
    if tls is not None and not all(tls):
        raise ClusterError("--tls-cert and --tls-key go together")
    acl = AclUser(args.access_key, args.secret_key) if args.acl else None
    cluster = LocalCluster(
        version=args.version,
        workdir=args.workdir,
        tls=tls,
        acl=acl,
        serialize_type=args.serialize_type,
        extra_broker_props=props,
        namesrv_count=args.namesrv_count,
        start_timeout=args.timeout,
        die_with_parent=False,  # it outlives this command
        proxy=args.proxy,
        slaves=args.slaves,
        slave_read_enable=args.slave_read,
        slave_acting_master=args.slave_acting_master,
    )
    cluster.start()
    cluster.detach()
    _write_state(state_path, cluster.to_state())
    extras = f", slaves {cluster.slaves}" if cluster.slaves else ""
    if cluster.proxy_addr:
        extras += f", proxy {cluster.proxy_addr} (gRPC {cluster.proxy_grpc_addr})"
    print(
        f"RocketMQ {cluster.version} up in {cluster.startup_seconds:.1f}s: "
        f"brokers {cluster.brokers}{extras}, work directory {cluster.workdir}, "
        f"state {state_path}",
        file=sys.stderr,
    )
    print(cluster.namesrv_addr)
    if cluster.proxy_addr:
        print(cluster.proxy_addr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = _load_state(Path(args.state_file))
    if state is None:
        print("down (no state file)")
        return 1
    cluster = LocalCluster.attach(state)
    healthy = True
    print(f"version {cluster.version}, work directory {cluster.workdir}")
    for name, entry in state["servers"].items():
        alive = cluster.is_running(str(name))
        answers = _port_answers(str(entry["addr"]))
        healthy = healthy and alive and answers
        print(
            f"{name:15} {entry['addr']:22} pid {entry['pid']:<8} "
            f"{'alive' if alive else 'DEAD'}, port {'answers' if answers else 'SILENT'}"
        )
    try:
        table = _query_cluster_table(cluster.namesrv_addr)
    except (OSError, ClusterError, ValueError) as exc:
        table = {}
        print(f"cluster info: failed ({exc!r})")
    else:
        print(f"registered brokers: {table}")
    healthy = healthy and all(table.get(k, {}).get(0) == v for k, v in cluster.brokers.items())
    healthy = healthy and all(table.get(k, {}).get(1) == v for k, v in cluster.slaves.items())
    if cluster.proxy_addr:
        try:
            route = _query_route(cluster.proxy_addr, CLUSTER_NAME)
        except (OSError, ClusterError, ValueError) as exc:
            healthy = False
            print(f"proxy {cluster.proxy_addr}: route lookup failed ({exc!r})")
        else:
            print(f"proxy {cluster.proxy_addr}: route of {CLUSTER_NAME!r} {route}")
    print(f"namesrv {cluster.namesrv_addr}: {'up' if healthy else 'NOT healthy'}")
    return 0 if healthy else 1


def _cmd_down(args: argparse.Namespace) -> int:
    state_path = Path(args.state_file)
    state = _load_state(state_path)
    if state is None:
        print(f"down (no state file at {state_path})")
        return 0
    LocalCluster.attach(state).stop(timeout=args.timeout)
    state_path.unlink(missing_ok=True)
    print(f"stopped the cluster at {state['namesrv_addr']}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    jars = resolve_classpath(args.version)
    print(f"RocketMQ {args.version}: {len(jars)} jars in {jars[0].parent}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rocketmq-cluster", description=(__doc__ or "").split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start a cluster in the background")
    up.add_argument("--version", default=DEFAULT_VERSION, help=f"default {DEFAULT_VERSION}")
    up.add_argument("--namesrv-count", type=int, default=1, help="name servers (default 1)")
    up.add_argument("--workdir", help="configs, stores and logs (default: a temporary dir)")
    up.add_argument("--serialize-type", choices=("JSON", "ROCKETMQ"), default="JSON")
    up.add_argument("--acl", action="store_true", help="brokers authenticate (ACL)")
    up.add_argument("--access-key", default=AclUser.access_key)
    up.add_argument("--secret-key", default=AclUser.secret_key)
    up.add_argument("--tls-cert", help="PEM certificate: brokers enforce TLS")
    up.add_argument("--tls-key", help="PEM PKCS#8 key of --tls-cert")
    up.add_argument(
        "--broker-prop",
        action="append",
        metavar="KEY=VALUE",
        help="extra broker config entry (repeatable)",
    )
    up.add_argument(
        "--proxy",
        action="store_true",
        help="also run the 5.x proxy (cluster mode); its remoting address is printed second",
    )
    up.add_argument("--slaves", action="store_true", help="a slave (brokerId 1) for each group")
    up.add_argument("--slave-read", action="store_true", help="slaveReadEnable=true on brokers")
    up.add_argument(
        "--slave-acting-master",
        action="store_true",
        help="enableSlaveActingMaster on brokers, supportActingMaster on the name servers",
    )
    up.add_argument(
        "--short-delay-levels",
        action="store_true",
        help=f"messageDelayLevel={SHORT_MESSAGE_DELAY_LEVELS}",
    )
    up.add_argument("--timeout", type=float, default=300.0, help="start-up limit in seconds")
    status = commands.add_parser("status", help="is the cluster of the state file up?")
    down = commands.add_parser("down", help="stop the cluster of the state file")
    down.add_argument("--timeout", type=float, default=30.0, help="SIGKILL after this")
    fetch = commands.add_parser("fetch", help="only resolve and cache the jars")
    fetch.add_argument("--version", default=DEFAULT_VERSION)
    for sub in (up, status, down):
        sub.add_argument(
            "--state-file", default=str(DEFAULT_STATE_FILE), help=f"default {DEFAULT_STATE_FILE}"
        )

    args = parser.parse_args(argv)
    handlers = {"up": _cmd_up, "status": _cmd_status, "down": _cmd_down, "fetch": _cmd_fetch}
    try:
        return handlers[args.command](args)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
