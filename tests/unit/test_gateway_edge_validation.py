"""Issue 18: text PostgreSQL or UTF-8 cannot hold (NUL, lone surrogates) and integers over int4 are refused
at the edge with 400 in OpenAI's error shape naming the field, never a 500. The text check runs before
authentication, so these run without a database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pydantic
import pytest
from fastapi.testclient import TestClient

from stratus.gateway.openai_models import ChatCompletionRequest
from stratus.validation import INT4_MAX, find_bad_text, text_problem

NUL, SURROGATE = "a\x00b", "a\ud800b"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def post_json(client: TestClient, path: str, body: object, method: str = "POST") -> tuple[int, dict[str, object]]:
    # json.dumps escapes NUL and surrogates (\u0000, \ud800), as any client's JSON encoder does.
    r = client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"})
    return r.status_code, r.json()["error"]


def test_text_problem_and_the_walk_name_the_first_bad_string() -> None:
    assert text_problem("plain ü 🙂") is None
    assert "NUL" in (text_problem(NUL) or "") and "surrogate" in (text_problem(SURROGATE) or "")
    assert find_bad_text({"a": [1, "ok", {"b": NUL}]}) == ("a.2.b", text_problem(NUL))
    where, why = find_bad_text({"meta": {SURROGATE: 1}}) or ("", "")
    assert where == f"meta.{SURROGATE}" and "key" in why
    assert find_bad_text({"a": ["x", 1, None, 2.5]}) is None


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "{bad}"}]},
     "messages.0.content"),
    ("/v1/chat/completions", {"model": "rag/{bad}", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "hi"}],
                              "metadata": {"k": "{bad}"}}, "metadata.k"),
    ("/v1/embeddings", {"model": "m", "input": ["ok", "{bad}"]}, "input.1"),
    ("/v1/admin/tenants", {"id": "t1", "name": "{bad}"}, "name"),
    ("/v1/admin/tenants/t1/keys", {"name": "{bad}"}, "name"),
    ("/v1/documents", {"filename": "{bad}.md"}, "filename"),
])
def test_bad_text_in_any_body_field_is_a_400_naming_it(client: TestClient, bad: str, path: str, body: object,
                                                       param: str) -> None:
    body = json.loads(json.dumps(body).replace("{bad}", json.dumps(bad)[1:-1]))
    status, error = post_json(client, path, body)
    assert status == 400 and error["param"] == param and error["code"] == "invalid_text", error


@pytest.mark.parametrize(("url", "param"), [
    ("/v1/traces/req%00x", "request_id"),
    ("/v1/admin/tenants/t%00x/limits", "tenant_id"),
    ("/v1/documents/doc%00id", "document_id"),
    ("/v1/documents?after=a%00b", "after"),
    ("/v1/models/fa%00st", "model_id"),
])
def test_nul_in_path_or_query_parameters_is_a_400_naming_it(client: TestClient, url: str, param: str) -> None:
    r = client.get(url)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("field", ["requests_per_minute", "tokens_per_minute"])
@pytest.mark.parametrize("model", ["KeyCreate", "LimitsUpdate"])
@pytest.mark.parametrize("value", [INT4_MAX + 1, 2**80])
def test_integers_over_int4_are_refused_naming_the_field(model: str, field: str, value: int) -> None:
    from stratus.gateway.app import validation_error
    from stratus.gateway.routes import admin

    body = getattr(admin, model)
    assert getattr(body.model_validate({field: INT4_MAX}), field) == INT4_MAX
    with pytest.raises(pydantic.ValidationError) as caught:
        body.model_validate({field: value})
    mapped = validation_error(caught.value.errors())
    assert mapped.status == 400 and mapped.param == field, mapped.message


def test_tenancy_refuses_what_the_columns_cannot_hold() -> None:
    from stratus.errors import InvalidInput
    from stratus.gateway.tenancy import _check_limit

    assert _check_limit("requests_per_minute", INT4_MAX) == INT4_MAX
    for name, value in (("requests_per_minute", INT4_MAX + 1), ("budget_usd", 99_999_999.9999999)):
        with pytest.raises(InvalidInput) as caught:
            _check_limit(name, value)
        assert caught.value.field == name


def test_token_limits_are_bounded_by_the_counters() -> None:
    base = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    assert ChatCompletionRequest.model_validate({**base, "max_tokens": INT4_MAX}).max_tokens == INT4_MAX
    with pytest.raises(ValueError, match="max_tokens"):
        ChatCompletionRequest.model_validate({**base, "max_tokens": INT4_MAX + 1})


def test_a_405_says_which_methods_the_path_allows(client: TestClient) -> None:
    r = client.put("/v1/documents/some-id")
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}


def test_the_openapi_document_declares_patterns_bounds_and_error_statuses(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert {"400", "401", "403"} <= set(op["responses"]), (method, path)
            assert "422" not in op["responses"], (method, path)  # never answered: schema mismatches are 400s
            shape = "AnthropicError" if path == "/v1/messages" else "ErrorResponse"  # each API's own error shape
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{shape}"}
            for p in op.get("parameters", ()):
                if p["in"] == "path" and p["name"] in ("tenant_id", "request_id", "key_id", "alias"):
                    assert "pattern" in p["schema"], (path, p["name"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    limit = next(p for p in doc["paths"]["/v1/documents"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
