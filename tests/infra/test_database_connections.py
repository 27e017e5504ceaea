"""Database connections on AWS: the request-path functions log in through RDS Proxy as stratus_app with IAM
auth tokens and cannot read the master secret; only MigrateFunction can, and CloudFormation runs it at
deploy time (DatabaseMigrations); every function's concurrency, hence its connections, is capped."""

from __future__ import annotations

import json
from typing import Any

from stratus.config import load_settings
from stratus_tools.local.template import function_properties, resources_of_type

from .conftest import ROOT

MIGRATE = "MigrateFunction"


def _props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def _functions(template: dict[str, Any]) -> list[str]:
    return [name for name, _ in resources_of_type(template, "AWS::Serverless::Function")]


def _secrets_read(props: dict[str, Any]) -> set[str]:
    return {p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
            for p in props.get("Policies", []) if isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p}


# The multilingual injection detector reads no database: it scores the texts it is sent.
NO_DATABASE = "GuardMultilingualFunction"


def test_the_request_path_is_seven_functions_and_the_migration_helper_is_apart(template: dict[str, Any]) -> None:
    assert sorted(_functions(template)) == sorted([
        "IngestFunction", "RetrieveFunction", "GenerateFunction", "GuardFunction", "EvalSamplerFunction",
        "GatewayFunction", NO_DATABASE, MIGRATE])
    assert function_properties(template, MIGRATE)["CodeUri"] == "functions/migrate/"
    assert not function_properties(template, MIGRATE).get("Events")  # nothing but CloudFormation invokes it


def test_only_the_migration_function_may_read_the_master_secret(template: dict[str, Any]) -> None:
    for logical_id in _functions(template):
        props = function_properties(template, logical_id)
        variables = props["Environment"]["Variables"]
        if logical_id == MIGRATE:
            assert "DatabaseSecret" in _secrets_read(props)
            assert variables["STRATUS_DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecret"}
        else:
            assert "DatabaseSecret" not in _secrets_read(props), logical_id
            assert "STRATUS_DATABASE_SECRET_ARN" not in variables, logical_id
            connects = {"Ref": "DatabaseConnectPolicy"} in props.get("Policies", [])
            assert connects == (logical_id != NO_DATABASE), logical_id


def test_no_transformed_role_but_the_migration_functions_reads_the_master_secret(transformed: dict[str, Any],
                                                                                template: dict[str, Any]) -> None:
    readers, connectors = set(), set()
    for logical_id, resource in transformed["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(a.startswith("secretsmanager:") for a in actions) and (
                        '"DatabaseSecret"' in json.dumps(statement["Resource"])):
                    readers.add(logical_id)
        if {"Ref": "DatabaseConnectPolicy"} in resource["Properties"].get("ManagedPolicyArns", []):
            connectors.add(logical_id)
    assert readers == {f"{MIGRATE}Role"}
    assert connectors == {f"{f}Role" for f in _functions(template)} - {f"{MIGRATE}Role", f"{NO_DATABASE}Role"}


def test_app_functions_connect_through_the_proxy_with_iam_at_deploy_time_migrated(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["STRATUS_DATABASE_PROXY_ENDPOINT"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}
    assert variables["STRATUS_DATABASE_APP_USER"] == "stratus_app"
    # No cold start migrates or publishes prompts: DatabaseMigrations does, once per deploy.
    assert (variables["STRATUS_AUTO_MIGRATE"], variables["STRATUS_AUTO_SYNC_PROMPTS"]) == ("false", "false")
    settings = load_settings(env="prod", documents_bucket="b", database_proxy_endpoint="p.proxy-x.rds.amazonaws.com",
                             auto_migrate="false", auto_sync_prompts="false")
    assert settings.database_app_user == "stratus_app" and settings.database_secret_arn is None

    (statement,) = _props(template, "DatabaseConnectPolicy")["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "rds-db:connect")
    arn, names = statement["Resource"]["Fn::Sub"]
    assert arn.endswith(":dbuser:${ProxyId}/stratus_app") and arn.startswith("arn:${AWS::Partition}:rds-db:")
    # The proxy's resource id (prx-...) is the last field of its ARN.
    assert names["ProxyId"] == {"Fn::Select": [6, {"Fn::Split": [":", {"Fn::GetAtt": ["DatabaseProxy",
                                                                                       "DBProxyArn"]}]}]}


def test_the_proxy_requires_tls_and_iam_end_to_end(template: dict[str, Any]) -> None:
    proxy = _props(template, "DatabaseProxy")
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["RequireTLS"] is True
    assert proxy["DefaultAuthScheme"] == "IAM_AUTH"  # clients with IAM tokens; the proxy to Aurora with IAM
    assert all(a.get("IAMAuth") == "REQUIRED" for a in proxy.get("Auth", []))  # no password login, ever
    assert proxy["VpcSubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
    assert _props(template, "DatabaseCluster")["EnableIAMDatabaseAuthentication"] is True

    role = _props(template, "DatabaseProxyRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "rds.amazonaws.com"}
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"]["Fn::Sub"].endswith(":dbuser:${DatabaseCluster.DBClusterResourceId}/stratus_app")

    group = template["Resources"]["DatabaseProxyTargetGroup"]
    assert group["Properties"]["DBProxyName"] == {"Ref": "DatabaseProxy"}
    assert group["Properties"]["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    pool = group["Properties"]["ConnectionPoolConfigurationInfo"]
    assert 0 < pool["MaxIdleConnectionsPercent"] <= pool["MaxConnectionsPercent"] <= 90
    # A client waits for a pooled connection less long than the shortest request-path timeout.
    timeouts = [function_properties(template, f)["Timeout"] for f in ("GatewayFunction", "RetrieveFunction")]
    assert pool["ConnectionBorrowTimeout"] < min(timeouts)
    assert group["DependsOn"] == "DatabaseInstance"


def test_the_proxy_is_reachable_from_the_functions_only(template: dict[str, Any]) -> None:
    assert _props(template, "DatabaseProxy")["VpcSecurityGroupIds"] == [{"Ref": "DatabaseProxySecurityGroup"}]
    (rule,) = _props(template, "DatabaseProxySecurityGroup")["SecurityGroupIngress"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert rule["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}


def test_migrations_run_at_deploy_time_through_the_custom_resource(template: dict[str, Any]) -> None:
    resource = template["Resources"]["DatabaseMigrations"]
    assert resource["Type"] == "Custom::DatabaseMigrations"
    props = resource["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": [MIGRATE, "Arn"]}
    # A new layer (new migrations or prompt files) changes a property, so an update reruns the function.
    assert props["LayerVersion"] == {"Ref": "CommonLayer"}
    assert int(props["ServiceTimeout"]) > function_properties(template, MIGRATE)["Timeout"]
    # The writer is up, and the function can answer (S3) and read the secret, on create and on delete.
    assert {"DatabaseInstance", "DatabaseSecretAttachment", "S3GatewayEndpoint",
            "SecretsManagerEndpoint"} <= set(resource["DependsOn"])
    assert (ROOT / "functions" / "migrate" / "app.py").is_file()


def test_every_function_has_a_concurrency_cap(template: dict[str, Any]) -> None:
    for logical_id in _functions(template):
        assert "ReservedConcurrentExecutions" in function_properties(template, logical_id), logical_id
    ingest = function_properties(template, "IngestFunction")
    assert ingest["ReservedConcurrentExecutions"] == (
        ingest["Events"]["DocumentEvents"]["Properties"]["ScalingConfig"]["MaximumConcurrency"])
    assert function_properties(template, MIGRATE)["ReservedConcurrentExecutions"] == 1
    # The arithmetic behind the numbers is written down where operators look.
    assert "## Database connections" in (ROOT / "docs" / "deploy.md").read_text()
