"""The CloudFormation YAML loader shared by the infra tests and the local stack."""

from __future__ import annotations

import textwrap

import pytest

from stratus_tools.local.template import (
    TemplateError,
    function_properties,
    load_template,
    loads_template,
    resources_of_type,
)

TEMPLATE = textwrap.dedent(
    """\
    AWSTemplateFormatVersion: 2010-09-09
    Transform: AWS::Serverless-2016-10-31
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
    Globals:
      Function:
        Runtime: python3.12
        Timeout: 30
        Layers: [!Ref CommonLayer]
        Environment:
          Variables:
            STRATUS_ENV: !Ref Stage
            STRATUS_DOCUMENTS_BUCKET: !Ref DocumentsBucket
    Resources:
      Bucket:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Sub "${AWS::StackName}-documents-${AWS::AccountId}"
          Tags:
            - Key: az
              Value: !Select [0, !GetAZs ""]
      Queue:
        Type: AWS::SQS::Queue
        Properties:
          RedrivePolicy:
            deadLetterTargetArn: !GetAtt Dlq.Arn
            maxReceiveCount: 3
          Other: !GetAtt [Dlq, QueueName]
          Named: !Join ["-", [!Ref "AWS::StackName", !If [IsProd, a, b]]]
          Sub2: !Sub
            - "${X}-y"
            - X: !Ref Stage
          When: !Condition IsProd
      Dlq:
        Type: AWS::SQS::Queue
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          Timeout: 60
          Layers: [extra]
          Environment:
            Variables:
              STRATUS_ENV: override
              OWN: "1"
    """
)


def test_short_form_intrinsics_become_their_long_form() -> None:
    t = loads_template(TEMPLATE)
    bucket = t["Resources"]["Bucket"]["Properties"]
    queue = t["Resources"]["Queue"]["Properties"]

    assert t["AWSTemplateFormatVersion"] == "2010-09-09"  # a string, not a date
    assert t["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert bucket["BucketName"] == {"Fn::Sub": "${AWS::StackName}-documents-${AWS::AccountId}"}
    assert bucket["Tags"][0]["Value"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert queue["Other"] == {"Fn::GetAtt": ["Dlq", "QueueName"]}
    assert queue["Named"] == {
        "Fn::Join": ["-", [{"Ref": "AWS::StackName"}, {"Fn::If": ["IsProd", "a", "b"]}]]
    }
    assert queue["Sub2"] == {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Stage"}}]}
    assert queue["When"] == {"Condition": "IsProd"}


def test_resources_of_type_keeps_template_order() -> None:
    t = loads_template(TEMPLATE)
    assert [name for name, _ in resources_of_type(t, "AWS::SQS::Queue")] == ["Queue", "Dlq"]


def test_function_properties_apply_globals_by_sam_rules() -> None:
    props = function_properties(loads_template(TEMPLATE), "Fn")

    assert props["Runtime"] == "python3.12"  # inherited
    assert props["Timeout"] == 60  # the function's own value wins
    assert props["Layers"] == [{"Ref": "CommonLayer"}, "extra"]  # lists concatenate, globals first
    assert props["Environment"]["Variables"] == {
        "STRATUS_ENV": "override",
        "STRATUS_DOCUMENTS_BUCKET": {"Ref": "DocumentsBucket"},
        "OWN": "1",
    }


def test_function_properties_refuses_other_resource_types() -> None:
    with pytest.raises(TemplateError, match="Queue is not an AWS::Serverless::Function"):
        function_properties(loads_template(TEMPLATE), "Queue")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Resources:\n  A: {Type: X}\n  A: {Type: Y}\n", "duplicate key 'A'"),
        ("Resources:\n  A:\n    Type: X\n    P: !GetAtt NoDot\n", "must be Resource.Attribute"),
        ("Parameters: {}\n", "Resources section"),
        ("Resources: [\n", "t.yaml"),
    ],
)
def test_malformed_templates_fail_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        loads_template(text, "t.yaml")


def test_load_template_reads_a_file(tmp_path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    assert load_template(path)["Transform"] == "AWS::Serverless-2016-10-31"
