"""SigV4 signing for HTTP requests made with `requests`: how OTLP spans reach X-Ray's own OTLP endpoint.

X-Ray takes OTLP/HTTP at `https://xray.<region>.amazonaws.com/v1/traces` (action xray:PutSpans), but only
SigV4-signed, which the SDK's OTLP exporter does not do. `SigV4Auth` is a requests auth hook: the exporter's
session signs each POST (body included, as sent) with the function's role credentials, which botocore (part
of the Lambda runtime) resolves and refreshes. So X-Ray needs no collector layer and no X-Ray SDK.
Imported by the OTLP exporter's worker thread on its first export, never at a cold start.
"""

from __future__ import annotations

import re
from typing import Any

XRAY_HOST = re.compile(r"^xray\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def xray_region(host: str) -> str | None:
    """The region of an X-Ray endpoint's host name (`xray.eu-west-1.amazonaws.com`), else None."""
    match = XRAY_HOST.match(host.lower())
    return match.group(1) if match else None


class SigV4Auth:
    """Signs a prepared request for `service` in `region` (credentials looked up on first use). A requests
    auth hook: any callable taking and returning the PreparedRequest."""

    def __init__(self, service: str, region: str, credentials: Any = None) -> None:
        self.service = service
        self.region = region
        self._credentials = credentials

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                raise RuntimeError(f"no AWS credentials to sign {self.service} requests with")
        return self._credentials.get_frozen_credentials()  # refreshed when a role's credentials expire

    def __call__(self, request: Any) -> Any:
        from botocore.auth import SigV4Auth as BotocoreSigV4
        from botocore.awsrequest import AWSRequest

        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        signed = AWSRequest(method=request.method, url=request.url, data=body,
                            headers={k: v for k, v in request.headers.items()
                                     if k.lower() in ("content-type", "content-encoding")})
        BotocoreSigV4(self._frozen_credentials(), self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request
