"""Creates moto resources from template.yaml's own resource definitions.

Supported: S3 buckets (name, versioning, queue/Lambda notifications with key filters), Step Functions state machines
(DefinitionUri + DefinitionSubstitutions), SQS queues
(name, FIFO, VisibilityTimeout, MessageRetentionPeriod, DelaySeconds, MaximumMessageSize,
ReceiveMessageWaitTimeSeconds, RedrivePolicy), SQS queue policies, and SAM functions (created in moto
with a placeholder zip and routed to the local handler; their SQS events become local pollers).
Other resource types are skipped: a property that refers to one is an error only if it is needed.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus_tools.local.cfn import Resolver, Unresolvable, references
from stratus_tools.local.lambdas import LocalFunction
from stratus_tools.local.template import TemplateError, behind_web_adapter, function_properties

log = logging.getLogger(__name__)

_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize",
                     "ReceiveMessageWaitTimeSeconds", "ContentBasedDeduplication")


@dataclass(frozen=True)
class SqsEventSource:
    """A function's SQS trigger (what Lambda's event source mapping would poll)."""

    function_name: str
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


class Schedule:
    """A function's schedule event: `rate(N unit)` as a period."""

    def __init__(self, logical_id: str, function_name: str, expression: str) -> None:
        self.logical_id = logical_id
        self.function_name = function_name
        self.expression = expression
        self.period_s = rate_seconds(expression)


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """Seconds between runs of `rate(15 minutes)`; cron(...) is not run locally (ValueError says so)."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"schedule {expression!r}: only rate(N minutes|hours|days) runs locally")
    return int(match.group(1)) * _UNIT_S[match.group(2).rstrip("s")]


@dataclass
class CreatedStack:
    resolver: Resolver
    functions: dict[str, LocalFunction] = field(default_factory=dict)  # by logical id
    event_sources: list[SqsEventSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)  # EventBridge schedules (run by local.scheduler)
    queue_urls: dict[str, str] = field(default_factory=dict)  # arn -> url
    skipped: list[str] = field(default_factory=list)

    def ref(self, logical_id: str, attribute: str = "Ref") -> Any:
        attrs = self.resolver.attributes.get(logical_id)
        if attrs is None:
            raise TemplateError(f"resource {logical_id} is not defined (or not emulated) in the template")
        return attrs[attribute]


class StackBuilder:
    """Creates the template's emulated resources through boto3 clients pointed at moto."""

    def __init__(self, template: dict[str, Any], template_dir: Path, resolver: Resolver,
                 clients: dict[str, Any]) -> None:
        self.template = template
        self.template_dir = template_dir
        self.resolver = resolver
        self.clients = clients
        self.stack = CreatedStack(resolver)
        self._creators = {
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::S3::Bucket": self._bucket,
            "AWS::Serverless::Function": self._function,
            "AWS::Serverless::StateMachine": self._state_machine,
            "AWS::SecretsManager::Secret": self._secret,
        }
        self._role_arn: str | None = None
        self._pending_events: list[tuple[str, str, dict[str, Any]]] = []

    def build(self) -> CreatedStack:
        resources: dict[str, Any] = self.template["Resources"]
        emulated = [lid for lid, r in resources.items() if r.get("Type") in self._creators]
        self.stack.skipped = [lid for lid in resources if lid not in emulated]
        done: set[str] = set()
        pending = list(emulated)
        while pending:
            ready = [lid for lid in pending if self._dependencies(lid, resources) <= done]
            if not ready:
                raise TemplateError(f"circular dependency between {', '.join(sorted(pending))}")
            for lid in ready:
                resource = resources[lid]
                if "Condition" in resource and not self.resolver.condition(resource["Condition"]):
                    log.info("skipping %s: condition %s is false", lid, resource["Condition"])
                else:
                    self._creators[resource["Type"]](lid, resource.get("Properties") or {})
                done.add(lid)
                pending.remove(lid)
        self._connect_event_sources()
        return self.stack

    def _dependencies(self, logical_id: str, resources: dict[str, Any]) -> set[str]:
        resource = resources[logical_id]
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function":
            props = function_properties(self.template, logical_id)
        depends = resource.get("DependsOn") or []
        names = set(references(props)) | set([depends] if isinstance(depends, str) else depends)
        return {n for n in names if n in resources and resources[n].get("Type") in self._creators}

    def _physical_name(self, logical_id: str, given: Any, *, lower: bool = False) -> str:
        if given is not None:
            return str(self.resolver.resolve(given))
        name = f"{self.resolver.values['AWS::StackName']}-{logical_id}"[:80]
        return name.lower() if lower else name

    # --- SQS ---------------------------------------------------------------------------------------
    def _queue(self, logical_id: str, props: dict[str, Any]) -> None:
        props = self.resolver.resolve(props)
        fifo = bool(props.get("FifoQueue"))
        name = self._physical_name(logical_id, props.get("QueueName"))
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes = {k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
                      for k in _QUEUE_ATTRIBUTES if k in props}
        if fifo:
            attributes["FifoQueue"] = "true"
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = policy if isinstance(policy, str) else json.dumps(policy)
        sqs = self.clients["sqs"]
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.stack.queue_urls[arn] = url
        self.resolver.created(logical_id, url, Arn=arn, QueueName=name, QueueUrl=url)
        log.info("queue %s -> %s", logical_id, name)

    def _queue_policy(self, logical_id: str, props: dict[str, Any]) -> None:
        props = self.resolver.resolve(props)
        policy = json.dumps(props["PolicyDocument"])
        for url in props.get("Queues", []):
            self.clients["sqs"].set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
        self.resolver.created(logical_id, logical_id)

    # --- Secrets Manager ----------------------------------------------------------------------------
    def _secret(self, logical_id: str, props: dict[str, Any]) -> None:
        """The secret with its SecretString, or one generated as CloudFormation would (GenerateSecretString)."""
        import secrets as random

        props = self.resolver.resolve(props)
        name = self._physical_name(logical_id, props.get("Name"))
        value = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if value is None and generate is not None:
            length = int(generate.get("PasswordLength", 32))
            password = random.token_urlsafe(length)[:length]
            if "SecretStringTemplate" in generate:
                value = json.dumps({**json.loads(generate["SecretStringTemplate"]),
                                    generate["GenerateStringKey"]: password})
            else:
                value = password
        created = self.clients["secretsmanager"].create_secret(Name=name, SecretString=value or "{}")
        self.resolver.created(logical_id, created["ARN"], Id=created["ARN"])
        log.info("secret %s -> %s", logical_id, name)

    # --- S3 ----------------------------------------------------------------------------------------
    def _bucket(self, logical_id: str, props: dict[str, Any]) -> None:
        props = self.resolver.resolve(props)
        s3 = self.clients["s3"]
        name = self._physical_name(logical_id, props.get("BucketName"), lower=True)
        region = self.resolver.values["AWS::Region"]
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        status = (props.get("VersioningConfiguration") or {}).get("Status")
        if status:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        self.resolver.created(
            logical_id, name, Arn=f"arn:aws:s3:::{name}", DomainName=f"{name}.s3.amazonaws.com",
            RegionalDomainName=f"{name}.s3.{region}.amazonaws.com",
        )
        notifications = props.get("NotificationConfiguration") or {}
        config: dict[str, list[dict[str, Any]]] = {}
        for cfn_key, api_key, target in (("QueueConfigurations", "QueueConfigurations", "Queue"),
                                         ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function")):
            for item in notifications.get(cfn_key, []):
                entry: dict[str, Any] = {
                    "QueueArn" if target == "Queue" else "LambdaFunctionArn": item[target],
                    "Events": [item["Event"]],
                }
                rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                if rules:
                    entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]}
                                                               for r in rules]}}
                config.setdefault(api_key, []).append(entry)
        for other in set(notifications) - {"QueueConfigurations", "LambdaConfigurations"}:
            log.warning("%s: %s notifications are not emulated locally", logical_id, other)
        if config:
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=config)
        log.info("bucket %s -> %s (%s)", logical_id, name, ", ".join(config) or "no notifications")

    # --- Lambda ------------------------------------------------------------------------------------
    def _function(self, logical_id: str, _: dict[str, Any]) -> None:
        props = function_properties(self.template, logical_id)
        name = self._physical_name(logical_id, props.get("FunctionName"))
        code_uri = self.resolver.resolve(props.get("CodeUri"))
        handler = self.resolver.resolve(props.get("Handler"))
        web_app = behind_web_adapter(props)
        if not isinstance(code_uri, str) or not isinstance(handler, str) or ("." not in handler and not web_app):
            raise TemplateError(f"{logical_id}: CodeUri and Handler (module.function) are required locally")
        fn = LocalFunction(
            logical_id=logical_id, name=name, code_dir=(self.template_dir / code_uri).resolve(),
            handler=handler, memory_mb=int(self.resolver.resolve(props.get("MemorySize", 128))),
            timeout_s=float(self.resolver.resolve(props.get("Timeout", 3))), web_app=web_app,
        )
        if not fn.path.is_file():
            raise TemplateError(f"{logical_id}: handler file {fn.path} does not exist")
        created = self.clients["lambda"].create_function(
            FunctionName=name, Runtime=str(self.resolver.resolve(props.get("Runtime", "python3.12"))),
            Role=self._lambda_role(), Handler=handler, Code={"ZipFile": _placeholder_zip()},
            Timeout=int(fn.timeout_s), MemorySize=fn.memory_mb,
        )
        self.stack.functions[logical_id] = fn
        self.resolver.created(logical_id, name, Arn=created["FunctionArn"])
        alias = self.resolver.resolve(props.get("AutoPublishAlias"))
        if alias:  # SAM publishes a version and points the alias at it: `!Ref <id>.Alias`, `!Ref <id>.Version`
            version = self.clients["lambda"].publish_version(FunctionName=name)
            self.resolver.created(f"{logical_id}.Version", version["FunctionArn"])
            self.resolver.created(f"{logical_id}.Alias", self.clients["lambda"].create_alias(
                FunctionName=name, Name=str(alias), FunctionVersion=version["Version"])["AliasArn"])
        for event_id, event in (props.get("Events") or {}).items():
            if event.get("Type") == "SQS":
                self._pending_events.append((logical_id, event_id, event.get("Properties") or {}))
            elif event.get("Type") == "Schedule":
                expression = str(self.resolver.resolve((event.get("Properties") or {}).get("Schedule")))
                try:
                    self.stack.schedules.append(Schedule(logical_id, name, expression))
                except ValueError as err:
                    raise TemplateError(f"{logical_id}.Events.{event_id}: {err}") from None
        log.info("function %s -> %s (%s)", logical_id, name, fn.path)

    # --- Step Functions ------------------------------------------------------------------------------
    def _state_machine(self, logical_id: str, props: dict[str, Any]) -> None:
        """The definition file with its ${Name} placeholders replaced by DefinitionSubstitutions, as SAM does."""
        import re

        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            raise TemplateError(f"{logical_id}: a DefinitionUri file is required locally")
        path = (self.template_dir / uri).resolve()
        if not path.is_file():
            raise TemplateError(f"{logical_id}: DefinitionUri {path} does not exist")
        given = self.resolver.resolve(props.get("DefinitionSubstitutions") or {})
        substitutions = {k: str(v) for k, v in given.items()}
        text = path.read_text()
        missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(substitutions))
        if missing:
            raise TemplateError(f"{logical_id}: no DefinitionSubstitutions for {', '.join(missing)}")
        definition = re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)
        json.loads(definition)  # a broken file fails here, naming the resource, not inside moto
        name = self._physical_name(logical_id, props.get("Name"))
        kind = str(self.resolver.resolve(props.get("Type", "STANDARD")))
        arn = self.clients["stepfunctions"].create_state_machine(
            name=name, definition=definition, roleArn=self._lambda_role(), type=kind)["stateMachineArn"]
        self.resolver.created(logical_id, arn, Arn=arn, Name=name)
        log.info("state machine %s -> %s (%s)", logical_id, name, kind)

    def _lambda_role(self) -> str:
        if self._role_arn is None:
            iam = self.clients["iam"]
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "lambda.amazonaws.com"}}]}
            role_name = f"{self.resolver.values['AWS::StackName']}-local-functions"
            self._role_arn = iam.create_role(RoleName=role_name,
                                             AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        return self._role_arn

    def _connect_event_sources(self) -> None:
        for logical_id, event_id, props in self._pending_events:
            try:
                queue_arn = self.resolver.resolve(props["Queue"])
            except Unresolvable as err:
                raise TemplateError(f"{logical_id}.Events.{event_id}: {err}") from None
            if queue_arn not in self.stack.queue_urls:
                raise TemplateError(f"{logical_id}.Events.{event_id}: queue {queue_arn} is not in the template")
            self.stack.event_sources.append(SqsEventSource(
                function_name=self.stack.functions[logical_id].name, queue_arn=queue_arn,
                queue_url=self.stack.queue_urls[queue_arn],
                batch_size=int(self.resolver.resolve(props.get("BatchSize", 10))),
                report_batch_item_failures="ReportBatchItemFailures"
                in self.resolver.resolve(props.get("FunctionResponseTypes", [])),
                enabled=bool(self.resolver.resolve(props.get("Enabled", True))),
            ))


def _placeholder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "Invoked locally: the local stack routes this function to its handler.\n")
    return buf.getvalue()
