"""HTTPS with --tls-cert/--tls-key, with a certificate made at test time."""

from __future__ import annotations

import datetime
import ipaddress
import uuid

import mlflow
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server import GatewayProcess


def self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost that is its own authority; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_gateway(database_url, certificate):
    cert, key = certificate
    process = GatewayProcess(database_url, "--tls-cert", cert, "--tls-key", key)
    yield process
    process.stop()


@pytest.fixture
def client_env(https_gateway, monkeypatch):
    for name in ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(https_gateway.url)
    yield monkeypatch
    while mlflow.active_run() is not None:
        mlflow.end_run()


def log_and_read_back() -> None:
    mlflow.set_experiment("tls-" + uuid.uuid4().hex)
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.25, step=1)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"loss": 0.25}


def test_https_url(https_gateway):
    assert https_gateway.url.startswith("https://127.0.0.1:")


def test_stock_client_with_server_cert_path(client_env, certificate):
    client_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", certificate[0])
    log_and_read_back()


def test_stock_client_with_insecure_tls(client_env):
    client_env.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    log_and_read_back()


def test_unverified_certificate_is_refused_by_clients(https_gateway, certificate):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_gateway.url + "/health", timeout=10)
    assert requests.get(https_gateway.url + "/health", verify=certificate[0], timeout=10).text == "OK"


def test_plain_http_is_not_served(https_gateway):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(https_gateway.url.replace("https://", "http://") + "/health", timeout=10)
