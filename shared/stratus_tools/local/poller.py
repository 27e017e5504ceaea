"""A local stand-in for Lambda's SQS event source mapping.

Receives up to BatchSize messages, invokes the function (through moto's Lambda API, so the same
invocation path as every other trigger) with the SQS event Lambda would build, deletes what
succeeded and makes the rest visible again after a short delay. With ReportBatchItemFailures only the
reported items are retried; a function error retries the whole batch, as on AWS. The queue's own
redrive policy (moto applies it on receive) moves a message that keeps failing to the DLQ.

A batch whose first message carries an X-Ray AWSTraceHeader (its sender was traced) is invoked with that
header, so the function's segments join the sender's trace (moto's S3 notifications carry none).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from stratus_tools.local.lambdas import carry_trace_headers, outgoing_trace_header
from stratus_tools.local.resources import SqsEventSource

log = logging.getLogger(__name__)


def lambda_sqs_event(messages: list[dict[str, Any]], source: SqsEventSource, region: str) -> dict[str, Any]:
    """The event Lambda passes to a function for a batch of SQS messages."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": a.get("StringValue"), "binaryValue": a.get("BinaryValue"),
                   "stringListValues": [], "binaryListValues": [], "dataType": a["DataType"]}
            for name, a in (m.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": m.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": region,
    } for m in messages]}


def failed_ids(response: dict[str, Any], errored: bool, records: list[str],
               report_batch_item_failures: bool) -> set[str]:
    """Which message ids to retry, by Lambda's rules for SQS batches."""
    if errored:
        return set(records)
    if not report_batch_item_failures or not isinstance(response, dict):
        return set()
    failures = response.get("batchItemFailures") or []
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if any(not i or i not in records for i in ids):  # Lambda treats a malformed report as a failed batch
        return set(records)
    return ids  # type: ignore[return-value]


class SqsPoller:
    """One thread polling one queue for one function."""

    def __init__(self, source: SqsEventSource, sqs: Any, lambda_client: Any, region: str,
                 *, retry_delay_s: int = 1, wait_s: int = 1) -> None:
        self.source = source
        self.sqs = sqs
        self.lambda_client = carry_trace_headers(lambda_client)
        self.region = region
        self.retry_delay_s = retry_delay_s
        self.wait_s = wait_s
        self.busy = threading.Event()
        self.invocations = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqs-poller-{source.function_name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling, as the managed poller does; the error is logged
                log.exception("SQS poller for %s failed; retrying", self.source.function_name)
                self._stop.wait(1.0)

    def poll_once(self) -> int:
        """One receive + invoke + settle cycle; returns how many messages it handled."""
        messages = self.sqs.receive_message(
            QueueUrl=self.source.queue_url, MaxNumberOfMessages=min(self.source.batch_size, 10),
            WaitTimeSeconds=self.wait_s, AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if messages:
            self.busy.set()  # received messages stay counted as "not visible" until settled below
            try:
                self._handle(messages)
            finally:
                self.busy.clear()
        return len(messages)

    def _handle(self, messages: list[dict[str, Any]]) -> None:
        event = lambda_sqs_event(messages, self.source, self.region)
        with outgoing_trace_header((messages[0].get("Attributes") or {}).get("AWSTraceHeader")):
            result = self.lambda_client.invoke(FunctionName=self.source.function_name,
                                               Payload=json.dumps(event).encode())
        self.invocations += 1
        errored = "FunctionError" in result
        payload = result["Payload"].read()
        try:
            response = json.loads(payload) if payload else None
        except ValueError:
            response, errored = None, True
        ids = [m["MessageId"] for m in messages]
        failed = failed_ids(response, errored, ids, self.source.report_batch_item_failures)
        if errored:
            log.warning("%s failed on a batch of %d: %s", self.source.function_name, len(ids), payload[:500])
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.source.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])
            ])
        for m in messages:
            if m["MessageId"] in failed:  # retry soon rather than after the full visibility timeout
                self.sqs.change_message_visibility(QueueUrl=self.source.queue_url,
                                                   ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=self.retry_delay_s)

    def idle(self) -> bool:
        """No batch in flight and nothing visible, in flight or delayed on the queue."""
        if self.busy.is_set():
            return False
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.source.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ])["Attributes"]
        return not self.busy.is_set() and all(int(v) == 0 for v in attrs.values())

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.2)
        return False
