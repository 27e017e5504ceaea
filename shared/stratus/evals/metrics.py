"""The sampler's figures as CloudWatch metrics: the embedded metric format (EMF) written to the log, which
CloudWatch turns into metrics without an API call. Each metric is its own EMF document so each keeps its
own dimensions (a prompt version and metric name for scores; none for run totals)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stratus.observability import NAMESPACE  # one namespace for every metric the stack emits


@dataclass
class Metric:
    name: str
    value: float
    unit: str = "NoUnit"  # a Powertools MetricUnit name
    dimensions: dict[str, str] = field(default_factory=dict)


def emit(metrics: Iterable[Metric], *, service: str) -> int:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    count = 0
    for m in metrics:
        with single_metric(name=m.name, unit=getattr(MetricUnit, m.unit), value=m.value, namespace=NAMESPACE,
                           default_dimensions={"service": service, **m.dimensions}):
            count += 1
    return count
