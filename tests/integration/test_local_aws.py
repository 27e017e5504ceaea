"""The local stack builds its AWS side from template.yaml, and ingestion runs through it like on AWS."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from stratus.config import PROJECT_ROOT, load_settings
from stratus_tools.local.poller import SqsPoller
from stratus_tools.local.stack import LocalStack
from stratus_tools.local.template import load_template

TEMPLATE = load_template(PROJECT_ROOT / "template.yaml")
DATA_DIR = PROJECT_ROOT / ".stratus" / "test-local-aws"


def _props(logical_id: str, template: dict[str, Any] = TEMPLATE) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def _queue_attributes(stack: LocalStack, url: str) -> dict[str, str]:
    return stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def _document(db: Any, tenant_id: str, source_key: str) -> dict[str, Any] | None:
    from stratus.db.connection import tenant_transaction
    from stratus.db.documents import list_documents

    with tenant_transaction(tenant_id, db):
        return next((d for d in list_documents(db, tenant_id) if d["source_key"] == source_key), None)


def _copy_template(tmp_path: Path, template: dict[str, Any]) -> Path:
    """A variant of template.yaml in tmp_path; code paths stay pointing at the repository's functions."""
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = str(PROJECT_ROOT / resource["Properties"]["CodeUri"])
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = str(PROJECT_ROOT / resource["Properties"]["DefinitionUri"])
    path = tmp_path / "template.yaml"
    path.write_text(json.dumps(template))  # JSON is YAML; intrinsics are already in their long form
    return path


@pytest.fixture
def stack(pg_url: str):
    with LocalStack(load_settings(data_dir=DATA_DIR)) as running:
        yield running


def test_resources_come_from_the_template(stack: LocalStack) -> None:
    assert stack.resources is not None
    queue_url = stack.resources.ref("IngestQueue")
    dlq_arn = stack.resources.ref("IngestDeadLetterQueue", "Arn")

    # The queue carries the template's own settings, its redrive policy names the DLQ
    queue = _queue_attributes(stack, queue_url)
    assert int(queue["VisibilityTimeout"]) == _props("IngestQueue")["VisibilityTimeout"]
    assert int(queue["MessageRetentionPeriod"]) == _props("IngestQueue")["MessageRetentionPeriod"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == _props("IngestQueue")["RedrivePolicy"]["maxReceiveCount"]
    assert json.loads(queue["Policy"])["Statement"][0]["Principal"] == {"Service": "s3.amazonaws.com"}
    dlq = _queue_attributes(stack, stack.resources.ref("IngestDeadLetterQueue"))
    assert int(dlq["MessageRetentionPeriod"]) == _props("IngestDeadLetterQueue")["MessageRetentionPeriod"]

    # The bucket's name is the template's !Sub, and it notifies the queue for both event kinds
    assert stack.documents_bucket == f"stratus-local-documents-{stack.resources.resolver.values['AWS::AccountId']}"
    notification = stack.client("s3").get_bucket_notification_configuration(Bucket=stack.documents_bucket)
    configs = notification["QueueConfigurations"]
    expected = _props("DocumentsBucket")["NotificationConfiguration"]["QueueConfigurations"]
    assert sorted(e for c in configs for e in c["Events"]) == sorted(c["Event"] for c in expected)
    assert {c["QueueArn"] for c in configs} == {stack.resources.ref("IngestQueue", "Arn")}
    assert all(c["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "tenants/"}] for c in configs)

    # The SQS event of the ingest function became a poller with the template's batch settings
    (source,) = stack.resources.event_sources
    events = _props("IngestFunction")["Events"]["DocumentEvents"]["Properties"]
    assert source.queue_url == queue_url and source.batch_size == events["BatchSize"]
    assert source.report_batch_item_failures
    assert "DatabaseCluster" in stack.resources.skipped  # not emulated: embedded PostgreSQL stands in


def test_a_changed_template_property_is_reflected(pg_url: str, tmp_path: Path) -> None:
    # Given a copy of the template with other queue settings and another notification prefix
    template = copy.deepcopy(TEMPLATE)
    _props("IngestQueue", template)["VisibilityTimeout"] = 77
    _props("IngestQueue", template)["RedrivePolicy"]["maxReceiveCount"] = 5
    _props("IngestDeadLetterQueue", template)["QueueName"] = {"Fn::Sub": "${AWS::StackName}-poison"}
    for config in _props("DocumentsBucket", template)["NotificationConfiguration"]["QueueConfigurations"]:
        config["Filter"]["S3Key"]["Rules"][0]["Value"] = "incoming/"

    # When a stack starts from it
    with LocalStack(load_settings(data_dir=DATA_DIR), template_path=_copy_template(tmp_path, template)) as stack:
        assert stack.resources is not None
        queue = _queue_attributes(stack, stack.resources.ref("IngestQueue"))
        notification = stack.client("s3").get_bucket_notification_configuration(Bucket=stack.documents_bucket)

    # Then the emulated resources follow it
    assert queue["VisibilityTimeout"] == "77"
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:stratus-local-poison", "maxReceiveCount": 5}
    rules = [c["Filter"]["Key"]["FilterRules"] for c in notification["QueueConfigurations"]]
    assert rules == [[{"Name": "prefix", "Value": "incoming/"}]] * 2


def test_uploaded_object_is_ingested_through_the_queue(stack: LocalStack, tenant_id: str, db: Any) -> None:
    # Given a document put in the bucket under the tenant's prefix
    body = b"# Returns\n\nParcels can be returned within 30 days.\n\n## Labels\n\nPrint the label at home.\n"
    stack.client("s3").put_object(Bucket=stack.documents_bucket, Key=f"tenants/{tenant_id}/help/returns.md",
                                  Body=body, ContentType="text/markdown")

    # When the poller has drained the queue
    assert stack.wait_for_ingestion(timeout=120)

    # Then the document is ready, chunked, in the database
    doc = _document(db, tenant_id, "help/returns.md")
    assert doc is not None and doc["status"] == "ready", doc
    assert doc["version"] == 1 and doc["chunk_count"] >= 1 and doc["title"] == "Returns"
    assert stack.pollers[0].invocations >= 1


def test_poison_message_goes_to_the_dlq_while_its_batch_mates_succeed(
    pg_url: str, tenant_id: str, db: Any
) -> None:
    with LocalStack(load_settings(data_dir=DATA_DIR), start_pollers=False) as stack:
        assert stack.resources is not None
        (source,) = stack.resources.event_sources
        sqs = stack.client("sqs")
        poison = f"not an S3 notification {uuid.uuid4()}"
        # Given a batch with a valid S3 event and a poison message
        stack.client("s3").put_object(Bucket=stack.documents_bucket, Key=f"tenants/{tenant_id}/ok.txt",
                                      Body=b"Delivery takes two to four business days.")
        sqs.send_message(QueueUrl=source.queue_url, MessageBody=poison)
        poller = SqsPoller(source, sqs, stack.client("lambda", read_timeout=300), stack.region,
                           retry_delay_s=0, wait_s=1)

        # When the first batch is processed
        handled = 0
        while handled < 3:  # the s3:TestEvent, the object event, the poison message (1-10 per receive)
            handled += poller.poll_once()
        # Then the valid document is ready although the poison message failed
        doc = _document(db, tenant_id, "ok.txt")
        assert doc is not None and doc["status"] == "ready"

        # And after maxReceiveCount receives, the poison message is in the DLQ and the queue is empty
        max_receives = _props("IngestQueue")["RedrivePolicy"]["maxReceiveCount"]
        deadline = time.monotonic() + 60
        while not poller.idle() and time.monotonic() < deadline:
            poller.poll_once()
        assert poller.idle()
        assert poller.invocations >= max_receives
        dead = sqs.receive_message(QueueUrl=stack.resources.ref("IngestDeadLetterQueue"),
                                   AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in dead] == [poison]
        assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= max_receives
