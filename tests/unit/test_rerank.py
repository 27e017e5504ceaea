"""The reranking stage's pure parts: the choice per request, ARNs, the Rerank request shape (checked against
botocore's own service model), result parsing and billing."""

from __future__ import annotations

import pytest

from stratus.config import ConfigError, load_settings
from stratus.llm import errors as e
from stratus.retrieval.bedrock_rerank import (
    MAX_TEXT_CHARS,
    build_request,
    model_arn,
    parse_results,
    queries_billed,
    source_text,
)
from stratus.retrieval.models import Hit, RetrieveRequest
from stratus.retrieval.rerank import NoRerank, RerankChoice, choose, get_reranker


def _hit(text: str, title: str | None = None) -> Hit:
    return Hit(chunk_id=1, document_id="d", source_key="k", document_version=1, text=text, title=title,
               heading_path=[], page=None, score=1.0)


@pytest.mark.parametrize(("default", "stored", "requested", "expected"), [
    ("none", None, None, RerankChoice("none")),
    ("bedrock", None, None, RerankChoice("bedrock", "amazon.rerank-v1:0")),
    ("none", {"reranker": "bedrock", "rerank_model": "cohere.rerank-v3-5:0"}, None,
     RerankChoice("bedrock", "cohere.rerank-v3-5:0")),
    ("none", {"reranker": "bedrock", "rerank_model": None}, True, RerankChoice("bedrock", "amazon.rerank-v1:0")),
    ("bedrock", {"reranker": "none", "rerank_model": None}, True, RerankChoice("none")),  # cannot opt back in
    ("bedrock", {"reranker": None, "rerank_model": "cohere.rerank-v3-5:0"}, None,
     RerankChoice("bedrock", "cohere.rerank-v3-5:0")),
    ("bedrock", None, False, RerankChoice("none")),
])
def test_the_tenant_chooses_and_a_request_may_only_turn_it_off(default, stored, requested, expected) -> None:
    assert choose(load_settings(reranker=default), stored, requested) == expected


def test_the_retrieve_request_takes_rerank_as_a_boolean() -> None:
    assert RetrieveRequest.model_validate({"tenant_id": "t1", "query": "q", "rerank": False}).rerank is False
    with pytest.raises(ValueError, match="rerank"):
        RetrieveRequest.model_validate({"tenant_id": "t1", "query": "q", "rerank": "bedrock"})


def test_settings_name_the_variable_on_a_bad_reranker() -> None:
    with pytest.raises(ConfigError, match="STRATUS_RERANKER"):
        load_settings(reranker="colbert")
    with pytest.raises(ConfigError, match="STRATUS_RERANK_MODEL"):
        load_settings(rerank_model="cohere.rerank-v9:0")


def test_none_keeps_the_fused_order() -> None:
    hits = [_hit("a"), _hit("b"), _hit("c")]
    assert get_reranker("none") is get_reranker(RerankChoice("none"))
    assert NoRerank().rerank("q", hits, 2, deadline=0.0).hits == hits[:2]


@pytest.mark.parametrize(("region", "arn"), [
    ("us-west-2", "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"),
    ("cn-north-1", "arn:aws-cn:bedrock:cn-north-1::foundation-model/amazon.rerank-v1:0"),
    ("us-gov-west-1", "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.rerank-v1:0"),
])
def test_model_arns_are_region_qualified(region: str, arn: str) -> None:
    assert model_arn("amazon.rerank-v1:0", region) == arn


def test_the_request_is_valid_for_botocores_service_model() -> None:
    # botocore's validator, on the very shapes the client would send (no client, no network)
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("bedrock-agent-runtime")
    shape = model.operation_model("Rerank").input_shape
    params = build_request("what is hnsw", ["a", "b"], model_arn("cohere.rerank-v3-5:0", "eu-central-1"), 2,
                           next_token="page-2")
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    limits = model.shape_for("RerankSourcesList").metadata, model.shape_for("RerankTextDocumentTextString").metadata
    assert limits == ({"min": 1, "max": 1000, "sensitive": True}, {"min": 1, "max": MAX_TEXT_CHARS})


def test_source_text_carries_the_title_and_fits_the_limit() -> None:
    assert source_text(_hit("body", "Guide")) == "Guide\n\nbody"
    assert len(source_text(_hit("x" * 40_000))) == MAX_TEXT_CHARS
    assert source_text(_hit("")) == " "


def test_results_with_bad_indexes_are_malformed() -> None:
    assert parse_results({"results": [{"index": 1, "relevanceScore": 0.5}]}, 2, "m") == [(1, 0.5)]
    for bad in ({}, {"results": [{"index": 2, "relevanceScore": 0.1}]}, {"results": [{"index": 0}]}):
        with pytest.raises(e.MalformedResponse):
            parse_results(bad, 2, "m")


@pytest.mark.parametrize(("docs", "queries"), [(1, 1), (100, 1), (101, 2), (1000, 10)])
def test_a_call_is_billed_per_started_hundred_documents(docs: int, queries: int) -> None:
    assert queries_billed(docs) == queries


def test_a_rag_request_can_turn_reranking_off_through_the_workflow() -> None:
    import json
    from pathlib import Path

    from stratus import query
    from stratus.workflow_state import GenerateTask

    # Given a RAG task whose request said rerank: false (extra_body stratus.rerank)
    task = GenerateTask(request_id="r-1", tenant_id="acme", mode="rag", query="refunds?",
                        messages=[{"role": "user", "content": "refunds?"}],
                        retrieval_options={"rerank": False})
    # Then the in-process retrieve request carries it, and so do the workflow's Retrieve parameters
    assert query.retrieval_request(task).rerank is False
    assert GenerateTask(request_id="r-1", tenant_id="acme", mode="rag", query="q",
                        messages=[{"role": "user", "content": "q"}]).model_dump(mode="json")[
        "retrieval_options"]["rerank"] is None  # present as null: the ASL's JSONPath needs the key
    asl = json.loads((Path(__file__).resolve().parents[2] / "infra/statemachines/query.asl.json").read_text())
    assert asl["States"]["Retrieve"]["Parameters"]["rerank.$"] == "$.retrieval_options.rerank"
