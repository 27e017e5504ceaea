"""The wiring the design depends on: bucket -> queue -> ingest (with DLQ), the private network and the
database, and the deploy configuration per stage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stratus_tools.local.template import function_properties

from .conftest import sam_transform

ROOT = Path(__file__).resolve().parents[2]

BUCKET_NAME = "${AWS::StackName}-documents-${AWS::AccountId}"


def _props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def test_ingest_queue_outlives_the_function_and_redrives_to_the_dlq(template: dict[str, Any]) -> None:
    queue, dlq = _props(template, "IngestQueue"), _props(template, "IngestDeadLetterQueue")
    timeout = function_properties(template, "IngestFunction")["Timeout"]

    # A message stays invisible while its batch may still be running, with room for retries.
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] > queue.get("MessageRetentionPeriod", 4 * 24 * 3600)


def test_ingest_consumes_the_queue_with_partial_batch_failures(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    events = function_properties(template, "IngestFunction")["Events"]
    (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert sqs["BatchSize"] == 10
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 < sqs["MaximumBatchingWindowInSeconds"] <= 300

    (mapping,) = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mapping["FunctionName"] == {"Ref": "IngestFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_bucket_notifies_the_queue_of_tenant_objects_created_and_removed(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DocumentsBucket"]
    configs = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]

    assert {c["Event"] for c in configs} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    for c in configs:
        assert c["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
        assert c["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "tenants/"}]
    # S3 validates the destination when the notification is set: the queue policy must exist first.
    assert "IngestQueuePolicy" in (
        [bucket["DependsOn"]] if isinstance(bucket["DependsOn"], str) else bucket["DependsOn"]
    )
    assert bucket["Properties"]["BucketName"] == {"Fn::Sub": BUCKET_NAME}


def test_only_this_stacks_bucket_may_send_to_the_queue(template: dict[str, Any]) -> None:
    policy = _props(template, "IngestQueuePolicy")
    (statement,) = policy["PolicyDocument"]["Statement"]

    assert policy["Queues"] == [{"Ref": "IngestQueue"}]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    # The ARN is built from the bucket's name string, not !GetAtt DocumentsBucket.Arn (a cycle).
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}"
    }
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_bucket_is_private_and_encrypted(template: dict[str, Any]) -> None:
    bucket = _props(template, "DocumentsBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]


def test_database_is_aurora_serverless_v2_with_pgvector_08(template: dict[str, Any]) -> None:
    cluster, instance = _props(template, "DatabaseCluster"), _props(template, "DatabaseInstance")

    assert cluster["Engine"] == "aurora-postgresql"
    major, minor = (int(x) for x in str(cluster["EngineVersion"]).split(".")[:2])
    assert (major, minor) >= (16, 6)  # first 16.x with pgvector 0.8 (iterative index scans)
    assert {"MinCapacity", "MaxCapacity"} <= set(cluster["ServerlessV2ScalingConfiguration"])
    assert cluster["StorageEncrypted"] is True
    assert cluster["DeletionProtection"] == {"Fn::If": ["IsProd", True, False]}
    assert template["Resources"]["DatabaseCluster"]["DeletionPolicy"] == "Snapshot"
    assert instance["DBInstanceClass"] == "db.serverless"
    assert instance["DBClusterIdentifier"] == {"Ref": "DatabaseCluster"}
    assert instance["PubliclyAccessible"] is False


def test_database_accepts_postgres_from_the_functions_and_their_proxy_only(template: dict[str, Any]) -> None:
    rules = _props(template, "DatabaseSecurityGroup")["SecurityGroupIngress"]
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
        assert "CidrIp" not in rule
    # The functions' group for MigrateFunction (the owner's login); the app functions come through RDS Proxy.
    assert [r["SourceSecurityGroupId"] for r in rules] == [{"Ref": "FunctionSecurityGroup"},
                                                          {"Ref": "DatabaseProxySecurityGroup"}]


def test_private_subnets_span_two_availability_zones(template: dict[str, Any]) -> None:
    azs = [_props(template, s)["AvailabilityZone"] for s in ("PrivateSubnetA", "PrivateSubnetB")]
    assert azs == [{"Fn::Select": [0, {"Fn::GetAZs": ""}]}, {"Fn::Select": [1, {"Fn::GetAZs": ""}]}]
    subnets = [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
    assert _props(template, "DatabaseSubnetGroup")["SubnetIds"] == subnets
    assert template["Globals"]["Function"]["VpcConfig"]["SubnetIds"] == subnets


def test_functions_reach_aws_through_endpoints_not_a_nat(template: dict[str, Any]) -> None:
    # Internet egress exists only when asked for (ProviderEgress=nat, for hosted model APIs); default none.
    assert template["Parameters"]["ProviderEgress"]["Default"] == "none"
    assert template["Conditions"]["HasNat"] == {"Fn::Equals": [{"Ref": "ProviderEgress"}, "nat"]}
    egress = [lid for lid, r in template["Resources"].items()
              if r["Type"] in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP")
              or (r["Type"] == "AWS::EC2::Route" and "DestinationCidrBlock" in r["Properties"])]
    assert egress and all(template["Resources"][lid].get("Condition") in ("HasNat", "HasNatPerAz") for lid in egress)
    assert template["Conditions"]["HasNatPerAz"] == {"Fn::And": [{"Condition": "HasNat"}, {"Condition": "IsProd"}]}

    endpoints = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    }
    assert endpoints["s3"]["VpcEndpointType"] == "Gateway"
    for service in ("secretsmanager", "sqs", "xray", "bedrock-runtime"):
        assert endpoints[service]["VpcEndpointType"] == "Interface"
        assert endpoints[service]["PrivateDnsEnabled"] is True
        assert len(endpoints[service]["SubnetIds"]) == 2
    assert _props(template, "Vpc")["EnableDnsHostnames"] is True


def test_samconfig_deploys_dev_and_prod(samconfig: dict[str, Any]) -> None:
    for stage in ("dev", "prod"):
        deploy = samconfig[stage]["deploy"]["parameters"]
        assert samconfig[stage]["global"]["parameters"]["stack_name"] == f"stratus-{stage}"
        assert samconfig[stage]["global"]["parameters"]["region"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert f"Stage={stage}" in deploy["parameter_overrides"].split()
        assert deploy["resolve_s3"] is True
    assert samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


def test_samconfig_overrides_only_declared_parameters(
    template: dict[str, Any], samconfig: dict[str, Any]
) -> None:
    for stage in ("dev", "prod"):
        for pair in samconfig[stage]["deploy"]["parameters"]["parameter_overrides"].split():
            name, _, value = pair.partition("=")
            parameter = template["Parameters"][name]
            assert value in [str(v) for v in parameter.get("AllowedValues", [value])], pair


def test_state_machine_definition_and_substitutions_resolve(template: dict[str, Any]) -> None:
    import re

    props = _props(template, "QueryStateMachine")
    asl_path = ROOT / props["DefinitionUri"]
    definition = json.loads(asl_path.read_text())
    placeholders = set(re.findall(r"\$\{(\w+)\}", asl_path.read_text()))
    substitutions = props["DefinitionSubstitutions"]
    assert placeholders == set(substitutions), "every ${X} in the ASL has a substitution and vice versa"
    for name, value in substitutions.items():
        target = value["Fn::GetAtt"][0]
        assert template["Resources"][target]["Type"] == "AWS::Serverless::Function", name
    # every Task runs one of the substituted functions, and each is allowed to be invoked by the role
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert {t["Resource"] for t in tasks} == {f"${{{n}}}" for n in substitutions}
    invokable = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p}
    assert invokable == {v["Fn::GetAtt"][0] for v in substitutions.values()}
    # every Next / Default / Catch target names a state
    states = set(definition["States"])
    for state in definition["States"].values():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        assert {t for t in targets if t} <= states
    assert definition["StartAt"] in states


def test_the_multilingual_detector_is_restored_from_a_snapshot_and_invoked_through_its_alias(
        template: dict[str, Any], transformed: dict[str, Any]) -> None:
    # SnapStart on published versions, and what it cannot run with (provisioned concurrency, EFS, over
    # 512 MB of ephemeral storage)
    props = _props(template, "GuardMultilingualFunction")
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"} and props["AutoPublishAlias"] == "live"
    assert not {"ProvisionedConcurrencyConfig", "FileSystemConfigs"} & set(props)
    assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    # SAM publishes a version with SnapStart and points the alias at it
    resources = transformed["Resources"]
    function = resources["GuardMultilingualFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    aliases = [lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Alias"
               and r["Properties"]["FunctionName"] == {"Ref": "GuardMultilingualFunction"}]
    assert len(aliases) == 1 and resources[aliases[0]]["Properties"]["Name"] == "live"
    # the callers name the alias ($LATEST is never snapshotted) and may invoke it
    for caller in ("GatewayFunction", "GuardFunction"):
        variables = resources[caller]["Properties"]["Environment"]["Variables"]
        assert variables["STRATUS_MULTILINGUAL_FUNCTION"] == {"Ref": aliases[0]}, caller
        role = resources[f"{caller}Role"]["Properties"]
        statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]
                      if "lambda:InvokeFunction" in s["Action"]]
        resource = json.dumps([s["Resource"] for s in statements])
        # SAM's LambdaInvokePolicy grants function:<name>* (the trailing * takes the :live qualifier)
        assert "function:${functionName}*" in resource and "GuardMultilingualFunction" in resource, caller


@pytest.mark.parametrize("layer", ["CommonLayer", "MultilingualLayer"])
def test_a_new_layer_publishes_a_new_multilingual_version(template: dict[str, Any], layer: str) -> None:
    # The detector's code and models are in its layers: a layer that changed (a new S3 key after `sam deploy`
    # packages it) must give the alias a new version, or environments keep restoring the old snapshot
    def version_ids(key: str) -> set[str]:
        changed = copy.deepcopy(template)
        changed["Resources"][layer]["Properties"]["ContentUri"] = {"Bucket": "artifacts", "Key": key}
        resources = sam_transform(changed)["Resources"]
        return {lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Version"
                and r["Properties"]["FunctionName"] == {"Ref": "GuardMultilingualFunction"}}

    before, after = version_ids(f"{layer}-1.zip"), version_ids(f"{layer}-2.zip")
    assert len(before) == len(after) == 1 and before != after
    # and the version the alias leaves is deleted with its cached snapshot
    props = _props(template, "GuardMultilingualFunction")
    assert props["AutoPublishAliasAllProperties"] is True and props["VersionDeletionPolicy"] == "Delete"
