"""Ingest: S3 event notifications delivered through SQS -> document versions (partial batch failures)."""

from typing import Any

from stratus.ingest.consumer import process_sqs_batch
from stratus.observability import observe

obs = observe("ingest")  # a bad configuration fails the cold start, naming the variable


@obs.handler()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    obs.annotate(messages=len(event.get("Records") or []))
    # a span per object event (document: download, lookup, extract, chunk, embed, store)
    response, outcomes = process_sqs_batch(event, context)
    for outcome, count in outcomes.items():
        obs.count(f"Documents_{outcome}", count)
    return response
