"""The multilingual detector as the injection rail reaches it, and the event GuardMultilingualFunction answers.

The gate and the head (stratus.guard.multilingual) need USE and py3langid, which only MultilingualLayer
carries, so the gateway and the guard function invoke GuardMultilingualFunction (its name in
STRATUS_MULTILINGUAL_FUNCTION) synchronously. Where no function is named (`stratus dev` outside the local
stack, the tools, tests) the detector runs in this process, as it does inside that function.

The event, both ways (one wire format, defined here for both sides):
    {"texts": ["...", ...], "threshold": 0.7 | null, "trace_context": {...}}
 -> {"model": "injection-multilingual-v1", "verdicts": [{"language": "de", "score": 0.93, "flagged": true,
     "threshold": 0.66, "view": "text"}, {"language": "en"}, ...]}
A text the head does not take (English; a language outside the artifact's `head_languages`) comes back with
its language only: the caller's English detector judges it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stratus import spans
from stratus.errors import InvalidInput, TransientError
from stratus.guard.injection import InjectionScore

# Texts per invocation: a request's user turns are usually a handful; a long agent transcript is sent in
# several calls. No text is cut or refused for its length: the gateway's body limit (4 MiB) keeps a call's
# payload, sent as UTF-8, under Lambda's 6 MB, and the head reads at most 12 windows of a long text, as v7 does.
BATCH = 64
MAX_TEXTS = 256  # per event: more is a caller's bug, refused by name


class MultilingualUnavailable(TransientError):
    """GuardMultilingualFunction could not answer (throttled, failed, timed out, not deployed)."""

    code = "multilingual_unavailable"
    retry_after = 2.0


@dataclass(frozen=True)
class LanguageVerdict:
    language: str  # ISO 639-1, as the gate read the whole text
    score: InjectionScore | None  # the head's; None: the caller's English detector decides


def judge(texts: Sequence[str], *, threshold: float | None = None, timeout_s: float = 2.0) -> list[LanguageVerdict]:
    """Each text's language and, unless English, the head's verdict at `threshold` (None: the artifact's).
    Raises MultilingualUnavailable when the function named in the settings has not answered every batch
    within `timeout_s` (whole seconds, connecting included), or when no function is named and this process
    cannot load the detector."""
    from stratus.config import get_settings

    if not texts:
        return []
    function = get_settings().multilingual_function
    if not function:
        return _local(texts, threshold)
    deadline = time.monotonic() + timeout_s
    out: list[LanguageVerdict] = []
    for start in range(0, len(texts), BATCH):
        left = deadline - time.monotonic()
        if left <= 0:
            raise MultilingualUnavailable(f"{function}: {len(texts)} texts not judged within {timeout_s:g} s")
        out.extend(_invoke(function, texts[start:start + BATCH], threshold, left))
    return out


def _local(texts: Sequence[str], threshold: float | None) -> list[LanguageVerdict]:
    try:
        from stratus.guard.multilingual import get_multilingual_detector

        judged = get_multilingual_detector().judge(texts, threshold=threshold)
    except ImportError as err:  # a function's process without MultilingualLayer and no function named
        raise MultilingualUnavailable(f"STRATUS_MULTILINGUAL_FUNCTION is unset and {err.name or err} is not "
                                      "installed here") from None
    return [LanguageVerdict(language, score) for language, score in judged]


def _invoke(function: str, texts: Sequence[str], threshold: float | None, left_s: float) -> list[LanguageVerdict]:
    from botocore.exceptions import BotoCoreError, ClientError

    from stratus.aws.clients import client

    payload = {"texts": list(texts), "threshold": threshold, "trace_context": spans.carrier()}
    with spans.span("multilingual_invoke", texts=len(texts)) as step:
        try:
            # No retry: a call that timed out met a cold environment (its init takes seconds) or an overload,
            # and a second call would start another one; the rail judges with injection-v7 instead, and the
            # first call still leaves its environment warm for the next request.
            seconds = max(1, math.ceil(left_s))
            lam = client("lambda", read_timeout=seconds, connect_timeout=seconds, max_attempts=1)
            response = lam.invoke(FunctionName=function, InvocationType="RequestResponse",
                                  Payload=json.dumps(payload, ensure_ascii=False).encode())
            body = response["Payload"].read()
        except ClientError as err:  # throttled, not found, not allowed, too large: the function's side
            error = err.response.get("Error", {})
            raise MultilingualUnavailable(f"{function}: {error.get('Code')}: {error.get('Message')}") from None
        except BotoCoreError as err:  # connect or read timeout, endpoint unreachable, no region or credentials
            raise MultilingualUnavailable(f"{function}: {type(err).__name__}") from None
        if response.get("FunctionError"):
            detail = _error_message(body)
            step.annotate(error=detail[:200])
            raise MultilingualUnavailable(f"{function} failed: {detail}")
    try:
        return parse_response(json.loads(body), expected=len(texts))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise MultilingualUnavailable(f"{function} answered something else: {err}") from None


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        return f"{data.get('errorType')}: {data.get('errorMessage')}"
    return str(data)[:200]


def parse_response(data: Any, *, expected: int) -> list[LanguageVerdict]:
    verdicts = data["verdicts"]
    if not isinstance(verdicts, list):
        raise ValueError(f"verdicts is {type(verdicts).__name__}, not a list")
    if len(verdicts) != expected:
        raise ValueError(f"{expected} verdicts expected, got {len(verdicts)}")
    out = []
    for v in verdicts:
        score = None
        if v.get("score") is not None:
            score = InjectionScore(score=float(v["score"]), flagged=bool(v["flagged"]),
                                   threshold=float(v["threshold"]), view=str(v["view"]))
            if not (0 <= score.score <= 1 and 0 <= score.threshold <= 1):
                raise ValueError(f"a score or threshold outside [0, 1]: {v}")
        out.append(LanguageVerdict(language=str(v["language"]), score=score))
    return out


# --- the function's side ------------------------------------------------------------------------------


def answer(event: Any) -> dict[str, Any]:
    """GuardMultilingualFunction's answer to an event; InvalidInput names the field that is wrong."""
    from stratus.guard.multilingual import get_multilingual_detector

    texts, threshold = _checked(event)
    verdicts = _local(texts, threshold)
    return {"model": str(get_multilingual_detector().model.metadata["model"]),
            "verdicts": [_encoded(v) for v in verdicts]}


def _encoded(verdict: LanguageVerdict) -> dict[str, Any]:
    if verdict.score is None:
        return {"language": verdict.language}
    s = verdict.score
    return {"language": verdict.language, "score": round(s.score, 6), "flagged": s.flagged,
            "threshold": s.threshold, "view": s.view}


def _checked(event: Any) -> tuple[list[str], float | None]:
    if not isinstance(event, dict):
        raise InvalidInput("the event is an object with `texts`", field="texts")
    texts = event.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidInput("`texts` is a list of strings", field="texts")
    if len(texts) > MAX_TEXTS:
        raise InvalidInput(f"at most {MAX_TEXTS} texts per event, got {len(texts)}", field="texts")
    threshold = event.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not 0 <= threshold <= 1):
        raise InvalidInput("`threshold` is a number in [0, 1] or null", field="threshold")
    return texts, None if threshold is None else float(threshold)
