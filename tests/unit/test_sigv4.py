"""stratus.aws.sigv4: the OTLP exporter's requests to X-Ray are SigV4-signed, checked against a signature
computed here from the SigV4 specification (not botocore's code), for the exact body that is sent."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

import pytest
import requests
from botocore.credentials import Credentials

from stratus import telemetry
from stratus.aws.sigv4 import SigV4Auth, xray_region

URL = "https://xray.eu-west-1.amazonaws.com/v1/traces"
BODY = b"\x0a\x03abc protobuf bytes"


def _prepared(auth: SigV4Auth, body: bytes = BODY) -> requests.PreparedRequest:
    request = requests.Request("POST", URL, data=body, headers={"Content-Type": "application/x-protobuf"})
    session = requests.Session()
    session.auth = auth
    return session.prepare_request(request)


def expected_signature(method: str, url: str, headers: dict[str, str], body: bytes, secret: str, region: str,
                       service: str) -> str:
    """AWS Signature Version 4, from its published steps: canonical request, string to sign, derived key."""
    headers = {k.lower(): str(v).strip() for k, v in headers.items()}
    signed_headers = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    amz_date = headers["x-amz-date"]
    parts = urlsplit(url)
    headers.setdefault("host", parts.netloc)
    canonical = "\n".join([
        method, parts.path or "/", parts.query,
        "".join(f"{h}:{headers[h]}\n" for h in signed_headers), ";".join(signed_headers),
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_a_post_to_xray_is_signed_for_its_body_region_and_service() -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token="session-token")
    prepared = _prepared(SigV4Auth("xray", "eu-west-1", credentials))
    authorization = prepared.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/xray/aws4_request" in authorization
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "content-type", "x-amz-date", "x-amz-security-token"} <= set(signed)
    assert prepared.headers["X-Amz-Security-Token"] == "session-token"  # a role's session credentials
    signature = authorization.rsplit("Signature=", 1)[1]
    body = prepared.body if isinstance(prepared.body, bytes) else b""
    assert signature == expected_signature("POST", URL, dict(prepared.headers), body, credentials.secret_key,
                                           "eu-west-1", "xray")
    # another body is another signature: the spans posted are the spans signed
    other = _prepared(SigV4Auth("xray", "eu-west-1", credentials), body=BODY + b"!")
    assert other.headers["Authorization"].rsplit("Signature=", 1)[1] != signature


def test_credentials_come_from_the_environment_as_on_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLAMBDA")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    prepared = _prepared(SigV4Auth("xray", "eu-west-1"))
    assert "Credential=AKIDLAMBDA/" in prepared.headers["Authorization"]
    assert prepared.headers["X-Amz-Security-Token"] == "token"


def test_only_xrays_endpoint_gets_a_signing_session() -> None:
    assert xray_region("xray.us-east-1.amazonaws.com") == "us-east-1"
    assert xray_region("XRAY.cn-north-1.amazonaws.com.cn") == "cn-north-1"
    assert xray_region("xray.us-east-1.amazonaws.com.evil.example") is None
    assert xray_region("otlp.example.com") is None
    session = telemetry.signing_session(URL, credentials=Credentials("a", "b"))
    assert session is not None and isinstance(session.auth, SigV4Auth) and session.auth.region == "eu-west-1"
    assert telemetry.signing_session("http://127.0.0.1:4318/v1/traces") is None
    assert telemetry.signing_session("https://cloud.langfuse.com/api/public/otel/v1/traces") is None
