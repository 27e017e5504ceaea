"""Bedrock embedding models through boto3's bedrock-runtime InvokeModel (the runtime client the chat
adapter uses, stratus.aws.bedrock).

- Titan Text Embeddings V2: one text per call, `{"inputText", "dimensions", "normalize": true,
  "embeddingTypes": ["float"]}` -> `{"embedding", "inputTextTokenCount"}`.
- Cohere Embed v3: up to 96 texts per call, `{"texts", "input_type", "truncate": "NONE"}` where
  input_type is search_document for passages and search_query for questions -> `{"embeddings": [[...]]}`;
  the tokens billed come in the `x-amzn-bedrock-input-token-count` header. truncate NONE: a text over
  the model's window is refused (and reported as that text's failure) rather than silently cut.
Failures are classified like the chat and rerank adapters' (ClientError codes -> HTTP status -> the
taxonomy of stratus.provider_errors).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from stratus import provider_errors as e
from stratus.embeddings import EmbedKind
from stratus.embeddings.models import Call, EmbedInput, parse_model_id
from stratus.provider_http import classify_sdk_error, for_status, malformed

if TYPE_CHECKING:
    from stratus.config import Settings

_CODE_STATUS = {"throttlingexception": 429, "servicequotaexceededexception": 429,
                "modelnotreadyexception": 503, "serviceunavailableexception": 503,
                "internalserverexception": 500, "modeltimeoutexception": 408, "modelerrorexception": 500,
                "accessdeniedexception": 403, "unrecognizedclientexception": 403, "expiredtokenexception": 403,
                "validationexception": 400, "resourcenotfoundexception": 404}
INPUT_TYPE: dict[EmbedKind, str] = {"document": "search_document", "query": "search_query"}


def request_body(model: str, dims: int, texts: list[str], kind: EmbedKind) -> dict[str, Any]:
    if model.startswith("amazon.titan"):
        (text,) = texts
        return {"inputText": text, "dimensions": dims, "normalize": True, "embeddingTypes": ["float"]}
    return {"texts": texts, "input_type": INPUT_TYPE[kind], "truncate": "NONE"}


def parse_body(model: str, data: Any, headers: dict[str, str], name: str) -> tuple[np.ndarray, int | None]:
    header = headers.get("x-amzn-bedrock-input-token-count")
    billed = int(header) if header and header.isdigit() else None
    if not isinstance(data, dict):
        raise malformed(name, "the body is not a JSON object")
    if model.startswith("amazon.titan"):
        vector = data.get("embedding")
        count = data.get("inputTextTokenCount")
        rows: Any = [vector]
        billed = count if isinstance(count, int) else billed
    else:
        rows = data.get("embeddings")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows):
        raise malformed(name, "no embeddings in the answer")
    try:
        return np.asarray(rows, dtype=np.float32), billed
    except (TypeError, ValueError):
        raise malformed(name, "embeddings are not lists of numbers") from None


def bedrock_call(model_name: str, settings: Settings) -> Call:
    import botocore.exceptions as bex
    import botocore.parsers
    import urllib3.exceptions

    from stratus.aws.bedrock import runtime_client

    spec, dims = parse_model_id(model_name)
    client = runtime_client(region=settings.embedding_region, endpoint_url=settings.bedrock_endpoint_url,
                            timeout=settings.embedding_timeout_s)

    def classify(err: Exception) -> e.ProviderError:
        def specific(err: Exception, name: str) -> e.ProviderError | None:
            if isinstance(err, bex.ClientError):
                error = err.response.get("Error") or {}
                meta = err.response.get("ResponseMetadata") or {}
                code, message = str(error.get("Code") or ""), str(error.get("Message") or err)
                status = _CODE_STATUS.get(code.lower()) or int(meta.get("HTTPStatusCode") or 500)
                return for_status(status, f"{name}: {code}: {message}", deployment=name,
                                  headers=meta.get("HTTPHeaders"))
            if isinstance(err, bex.NoCredentialsError | bex.PartialCredentialsError):
                return e.AuthenticationFailed(f"{name}: no AWS credentials: {err}", deployment=name)
            if isinstance(err, bex.ParamValidationError):
                return e.InvalidRequest(f"{name}: {err}", deployment=name)
            return None

        return classify_sdk_error(err, model_name, timeout=(bex.ReadTimeoutError, bex.ConnectTimeoutError),
                                  connection=(bex.HTTPClientError, bex.ConnectionError,
                                              urllib3.exceptions.HTTPError),
                                  specific=specific, unparsable=(botocore.parsers.ResponseParserError, ValueError))

    def call(inputs: list[EmbedInput], kind: EmbedKind) -> tuple[np.ndarray, int | None]:
        texts = [t for t in inputs if isinstance(t, str)]
        if len(texts) != len(inputs):  # HostedEmbedder refuses them first; Bedrock's models take text only
            raise e.InvalidRequest(f"{model_name}: token ids: this model takes text", deployment=model_name,
                                   field="input")
        try:
            response = client.invoke_model(modelId=spec.model, contentType="application/json",
                                           accept="application/json",
                                           body=json.dumps(request_body(spec.model, dims, texts, kind)))
            data = json.loads(response["body"].read())
        except Exception as err:  # noqa: BLE001 - classified, never swallowed
            raise classify(err) from err
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        return parse_body(spec.model, data, headers, model_name)

    return call
