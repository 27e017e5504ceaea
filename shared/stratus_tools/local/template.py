"""Reads template.yaml (CloudFormation/SAM YAML with short-form intrinsics) into plain dicts.

`!Ref X` becomes {"Ref": "X"}, `!GetAtt A.B` becomes {"Fn::GetAtt": ["A", "B"]}, `!Sub`, `!Select`,
`!If`... become {"Fn::<Name>": ...}: the same JSON shape CloudFormation itself works with, so the
infra tests and the local stack (which creates moto resources from the template) read one model.
Dates stay strings ("2010-09-09") and duplicate keys are an error, as they are for CloudFormation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Short-form tags; each maps to its long form key. `!Ref` and `!Condition` have no `Fn::` prefix.
_FUNCTIONS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "If", "ImportValue", "Join", "Length",
    "Not", "Or", "Select", "Split", "Sub", "ToJsonString", "Transform",
)  # fmt: skip


class TemplateError(ValueError):
    """The template cannot be read; the message names the file and the position."""


class _Loader(yaml.SafeLoader):
    pass


def _node_value(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _intrinsic(key: str):  # noqa: ANN202 - yaml constructor
    def construct(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
        return {key: _node_value(loader, node)}

    return construct


def _get_att(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
    value = _node_value(loader, node)
    if isinstance(value, str):
        resource, sep, attribute = value.partition(".")
        if not sep:
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt {value!r} must be Resource.Attribute", node.start_mark
            )
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=deep)  # type: ignore[no-untyped-call]
    return result


_Loader.add_constructor("!Ref", _intrinsic("Ref"))
_Loader.add_constructor("!Condition", _intrinsic("Condition"))
_Loader.add_constructor("!GetAtt", _get_att)
for _name in _FUNCTIONS:
    _Loader.add_constructor(f"!{_name}", _intrinsic(f"Fn::{_name}"))
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# CloudFormation treats unquoted dates as strings (AWSTemplateFormatVersion: 2010-09-09).
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def loads_template(text: str, name: str = "<template>") -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise TemplateError(f"{name}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{name}: a template is a mapping with a Resources section")
    return data


def load_template(path: str | Path) -> dict[str, Any]:
    """The template at `path` as a dict, intrinsics in their long (JSON) form."""
    path = Path(path)
    return loads_template(path.read_text(encoding="utf-8"), str(path))


def resources_of_type(template: dict[str, Any], resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, resource) for every resource of `resource_type`, in template order."""
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == resource_type:
            yield logical_id, resource


def function_properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A serverless function's properties with Globals.Function applied, by SAM's rules.

    Scalars and intrinsics: the function's own value wins; mappings merge recursively (so
    Environment.Variables combine); lists concatenate, globals first (Layers, Policies).
    """
    resource = template["Resources"][logical_id]
    if resource.get("Type") != "AWS::Serverless::Function":
        raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function")
    return _merge(template.get("Globals", {}).get("Function", {}), resource.get("Properties", {}))


WEB_ADAPTER_WRAPPER = "/opt/bootstrap"  # AWS_LAMBDA_EXEC_WRAPPER of a function behind the Lambda Web Adapter


def behind_web_adapter(props: dict[str, Any]) -> bool:
    """A function whose Handler is a start script for a web app that the Lambda Web Adapter forwards to."""
    variables = (props.get("Environment") or {}).get("Variables") or {}
    return variables.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSIC_KEYS


_INTRINSIC_KEYS = frozenset({"Ref", "Condition", "Fn::GetAtt", *(f"Fn::{n}" for n in _FUNCTIONS)})


def _merge(global_value: Any, local_value: Any) -> Any:
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    if (
        isinstance(global_value, dict)
        and isinstance(local_value, dict)
        and not (_is_intrinsic(global_value) or _is_intrinsic(local_value))
    ):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    return local_value
