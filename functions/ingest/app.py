"""Ingest: S3 event notifications delivered through SQS -> document versions (partial batch failures)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus.config import get_settings
from stratus.ingest.consumer import process_sqs_batch

settings = get_settings()  # a bad configuration fails the cold start, naming the variable
logger = Logger(service="ingest", level=settings.log_level)
copy_config_to_registered_loggers(source_logger=logger, include={"stratus"})  # library logs as JSON too
metrics = Metrics(namespace="Stratus", service="ingest")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    response, outcomes = process_sqs_batch(event, context)
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"Documents_{outcome}", unit=MetricUnit.Count, value=count)
    return response
