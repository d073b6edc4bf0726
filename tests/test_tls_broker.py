"""TLS against real brokers that enforce it, for each driver.

The module makes its own certificates (a test CA and a server certificate it signs,
for IP 127.0.0.1 and DNS localhost) and starts a cluster whose brokers run with
``tls.server.mode=enforcing`` (plain connections are closed) and whose name server
is permissive (TLS and plain both accepted). A client with ``ssl_context=`` a
context trusting that CA sends and reads back; the brokers are addressed by IP, and
the client checks the certificate against that IP (its subjectAltName). Without TLS,
or trusting another CA, a send fails promptly with a clear error.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rocketmq_proto import (
    ConnectionClosedError,
    Message,
    RequestTimeoutError,
    RocketMQError,
    SendStatus,
)

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

# The machine running these may be loaded (2 shared cores): successful paths get
# generous limits; the failure paths keep short ones and must fail within them.
OK_LIMITS = {"send_timeout": 20.0, "request_timeout": 20.0, "connect_timeout": 10.0}
SEND_TIMEOUT = 8.0
CONNECT_TIMEOUT = 5.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path  # the CA the good clients trust
    other_ca_cert: Path  # a CA that signed nothing the servers present
    server_cert: Path
    server_key: Path  # unencrypted PKCS#8, as netty wants it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path) -> Pki:
    ca_key, ca_cert = _make_ca("rocketmq-py test CA")
    _, other_ca_cert = _make_ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(
        ca_cert=directory / "ca.pem",
        other_ca_cert=directory / "other-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca_cert.write_bytes(other_ca_cert.public_bytes(pem))
    pki.server_cert.write_bytes(cert.public_bytes(pem))
    pki.server_key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_cluster(pki: Pki) -> Iterator[launcher.LocalCluster]:
    local = launcher.LocalCluster(tls=(pki.server_cert, pki.server_key))
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start the TLS cluster: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


def trusting(pki: Pki) -> ssl.SSLContext:
    """Verifies the chain and the host name (the brokers' IP against the subjectAltName)."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


@pytest.fixture(scope="module")
def admin(tls_cluster: launcher.LocalCluster, backend: Backend, pki: Pki) -> Iterator[Any]:
    with backend.open(
        "Admin",
        tls_cluster.namesrv_addr,
        ssl_context=trusting(pki),
        request_timeout=20.0,
        connect_timeout=10.0,
    ) as made:
        yield made


@pytest.fixture(scope="module")
def topic(tls_cluster: launcher.LocalCluster, backend: Backend, admin: Any) -> str:
    name = unique(f"TlsT_{backend.name}")
    created = admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
    assert sorted(created) == sorted(tls_cluster.brokers)
    return name


def test_sends_over_tls_with_a_trusted_certificate(
    tls_cluster: launcher.LocalCluster, backend: Backend, pki: Pki, admin: Any, topic: str
) -> None:
    with backend.open(
        "Producer",
        tls_cluster.namesrv_addr,
        group=unique("tls"),
        ssl_context=trusting(pki),
        **OK_LIMITS,
    ) as producer:
        brokers = set()
        for i in range(6):
            msg = Message(topic, b"secret \x00\xff %d" % i, tags="tls", keys=[unique("k")])
            result = producer.send(msg)
            assert result.status is SendStatus.SEND_OK
            brokers.add(result.message_queue.broker_name)
            stored = admin.view_message(result.offset_msg_id)
            assert stored.body == msg.body and stored.keys == msg.keys
        assert brokers == set(tls_cluster.brokers)
        # Many requests in flight on each TLS connection at once.
        messages = [Message(topic, b"pipelined %d" % i + bytes(300)) for i in range(100)]
        futures = [producer.send_async(m, 30.0) for m in messages]
        results = [f.result(60) for f in futures]
        assert len({r.msg_id for r in results}) == 100
        for msg, result in list(zip(messages, results, strict=True))[::10]:
            assert admin.view_message(result.offset_msg_id).body == msg.body
        batch = [Message(topic, b"batch %d" % i) for i in range(5)]
        result = producer.send_batch(batch)
        for msg, offset_id in zip(batch, result.offset_msg_id.split(","), strict=True):
            assert admin.view_message(offset_id).body == msg.body


def test_sends_over_tls_without_verification(
    tls_cluster: launcher.LocalCluster, backend: Backend, admin: Any, topic: str
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with backend.open(
        "Producer",
        tls_cluster.namesrv_addr,
        group=unique("tlsnv"),
        ssl_context=context,
        **OK_LIMITS,
    ) as producer:
        result = producer.send(Message(topic, b"unverified"))
        assert admin.view_message(result.offset_msg_id).body == b"unverified"


def _failed_send(backend: Backend, namesrv_addr: str, topic: str, **options: Any) -> Exception:
    with backend.open(
        "Producer",
        namesrv_addr,
        group=unique("tlsbad"),
        send_timeout=SEND_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        **options,
    ) as producer:
        began = time.monotonic()
        with pytest.raises(RocketMQError) as info:
            producer.send(Message(topic, b"never stored"))
        elapsed = time.monotonic() - began
    print(f"\n[{backend.name}] {type(info.value).__name__} after {elapsed:.2f}s: {info.value}")
    # It fails within the send's timeout (and some scheduling slack): it never hangs.
    assert elapsed < SEND_TIMEOUT + 2.0
    return info.value


def test_plain_connection_to_an_enforcing_broker_fails_clearly(
    tls_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    # The name server is permissive, so the route is found; the brokers close the
    # plain connection.
    error = _failed_send(backend, tls_cluster.namesrv_addr, topic)
    assert isinstance(error, ConnectionClosedError | RequestTimeoutError), repr(error)


def test_untrusted_certificate_fails_clearly(
    tls_cluster: launcher.LocalCluster, backend: Backend, pki: Pki, topic: str
) -> None:
    context = ssl.create_default_context(cafile=str(pki.other_ca_cert))
    error = _failed_send(backend, tls_cluster.namesrv_addr, topic, ssl_context=context)
    assert isinstance(error, ConnectionClosedError), repr(error)
    assert "certificate" in str(error).lower() or "certificate" in repr(error.__cause__).lower()


def test_the_documented_tls_example_runs_against_brokers_enforcing_tls(
    tls_cluster: launcher.LocalCluster, pki: Pki, tmp_path: Path
) -> None:
    """The security guide's TLS block, which the documentation test leaves to this
    module, runs here as written (its ``ca.pem`` is the cluster's CA)."""
    import shutil
    import threading

    import rocketmq_sync

    from .test_docs_broker import ALL_BLOCKS, _run_block

    [block] = [b for b in ALL_BLOCKS if b.skip and "TLS" in b.skip]
    shutil.copyfile(pki.ca_cert, tmp_path / "ca.pem")
    with rocketmq_sync.Admin(
        tls_cluster.namesrv_addr, ssl_context=trusting(pki), request_timeout=20.0
    ) as tls_admin:
        outcome = _run_block(
            block,
            tls_cluster.namesrv_addr,
            len(tls_cluster.brokers),
            tls_admin,
            tmp_path,
            threading.Lock(),
        )
    assert outcome.returncode == 0, f"{block.where}: {outcome.returncode}\n{outcome.output[-3000:]}"
