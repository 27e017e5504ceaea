"""OpenAI's text-embedding-3 models through the official SDK (`client.embeddings.create`).

`dimensions` is sent to the models that offer several sizes (the API shortens and re-normalises the vector
itself; text-embedding-ada-002 has one size and refuses the parameter); the SDK asks for
base64 and decodes it. `usage.prompt_tokens` is what is billed. The SDK's own retries are off: the
shared loop in stratus.embeddings.hosted retries, as the model router does for chat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stratus import provider_errors as e
from stratus.embeddings import EmbedKind
from stratus.embeddings.models import Call, EmbedInput, parse_model_id
from stratus.provider_http import classify_sdk_error, describe, for_status, malformed

if TYPE_CHECKING:
    from stratus.config import Settings

CONNECT_TIMEOUT_S = 2.0


def api_key(settings: Settings) -> str | None:
    """The key the chat catalog uses too: the setting, else the provider secret's `openai` entry."""
    if settings.openai_api_key is not None:
        return settings.openai_api_key.get_secret_value()
    if settings.provider_secret_arn:
        from stratus.aws.secrets import json_secret

        return json_secret(settings.provider_secret_arn).get("openai")
    return None


def openai_call(model_name: str, settings: Settings) -> Call:
    import httpx2

    from stratus.openai_sdk import openai

    spec, dims = parse_model_id(model_name)
    key = api_key(settings)
    if key is None:
        raise e.AuthenticationFailed(f"{model_name}: no API key configured (STRATUS_OPENAI_API_KEY, or `openai` "
                                     f"in the provider secret)", deployment=model_name, field="api_key")
    timeout = settings.embedding_timeout_s
    client = openai.OpenAI(api_key=key, base_url=settings.openai_base_url,
                           max_retries=0, timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)))

    def specific(err: Exception, name: str) -> e.ProviderError | None:
        if isinstance(err, openai.APIStatusError):
            return for_status(err.status_code, f"{name}: {describe(err.body, str(err))}", deployment=name,
                              headers=err.response.headers)
        if isinstance(err, openai.APIResponseValidationError):
            return malformed(name, str(err), err.status_code)
        return None

    def call(texts: list[EmbedInput], kind: EmbedKind) -> tuple[np.ndarray, int | None]:
        inputs = _homogeneous(texts, model_name)
        try:
            response = client.embeddings.create(model=spec.model, input=inputs,
                                                dimensions=dims if len(spec.dimensions) > 1 else openai.omit)
            rows = sorted(response.data, key=lambda d: d.index)
            vectors = np.asarray([d.embedding for d in rows], dtype=np.float32)
        except Exception as err:  # noqa: BLE001 - classified, never swallowed
            raise classify_sdk_error(err, model_name, timeout=(openai.APITimeoutError,),
                                     connection=(openai.APIConnectionError, httpx2.TransportError),
                                     specific=specific) from err
        return vectors, response.usage.prompt_tokens if response.usage else None

    return call


def _homogeneous(inputs: list[EmbedInput], model_name: str) -> list[str] | list[list[int]]:
    """The API takes texts or token arrays in one call, not both."""
    texts = [t for t in inputs if isinstance(t, str)]
    if len(texts) == len(inputs):
        return texts
    if texts:
        raise e.InvalidRequest(f"{model_name}: texts and token arrays cannot share a call", deployment=model_name,
                               field="input")
    return [t for t in inputs if isinstance(t, list)]
