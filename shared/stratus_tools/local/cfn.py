"""CloudFormation intrinsics, resolved the way CloudFormation would for the local stack.

The local stack creates its moto resources from template.yaml's own definitions; this module turns
property values containing `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
`Fn::If` (with `Conditions`) and `Fn::ToJsonString` into plain values, and finds which resources a
value depends on so resources can be created in dependency order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from stratus_tools.local.template import TemplateError

NO_VALUE = object()  # AWS::NoValue: the property is removed
_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class Unresolvable(TemplateError):
    """A value refers to something the local stack does not emulate (or has not created yet)."""


class Resolver:
    """Resolves intrinsics against pseudo parameters, parameter defaults and created resources."""

    def __init__(self, template: dict[str, Any], *, stack_name: str, region: str, account_id: str,
                 parameters: dict[str, str] | None = None) -> None:
        self.template = template
        self.values: dict[str, Any] = {
            "AWS::StackName": stack_name, "AWS::Region": region, "AWS::AccountId": account_id,
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
        }
        for name, spec in (template.get("Parameters") or {}).items():
            if parameters and name in parameters:
                self.values[name] = parameters[name]
            elif "Default" in spec:
                self.values[name] = spec["Default"]
        # logical id -> {"Ref": physical id, <attribute>: value, ...}, filled as resources are created
        self.attributes: dict[str, dict[str, Any]] = {}
        self._conditions: dict[str, bool] = {}

    def created(self, logical_id: str, ref: Any, **attributes: Any) -> None:
        self.attributes[logical_id] = {"Ref": ref, **attributes}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name in self.attributes:
            return self.attributes[name]["Ref"]
        raise Unresolvable(f"!Ref {name}: not a parameter or an emulated resource")

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        attrs = self.attributes.get(logical_id)
        if attrs is None:
            raise Unresolvable(f"!GetAtt {logical_id}.{attribute}: {logical_id} is not an emulated resource")
        if attribute not in attrs:
            raise Unresolvable(f"!GetAtt {logical_id}.{attribute}: attribute not emulated locally")
        return attrs[attribute]

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self._get_att(logical_id, self.resolve(attribute))
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            sep, items = arg
            return self.resolve(sep).join(str(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = self.resolve(arg)
            return text.split(sep)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
            return self._boolean(key, arg)
        raise Unresolvable(f"{key} is not supported by the local stack")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self._get_att(*name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VAR.sub(replace, text).replace("${!", "${")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"condition {name!r} is not defined in Conditions")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def _boolean(self, key: str, arg: Any) -> bool:
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        values = [bool(self.resolve(v)) for v in arg]
        if key == "Fn::Not":
            return not values[0]
        return all(values) if key == "Fn::And" else any(values)


def references(value: Any) -> Iterator[str]:
    """Names a value refers to (resources, parameters, pseudo parameters), for dependency ordering."""
    if isinstance(value, list):
        for v in value:
            yield from references(v)
    elif isinstance(value, dict):
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref" and isinstance(arg, str):  # SAM's `!Ref <function>.Alias` depends on the function
                yield arg.removesuffix(".Alias").removesuffix(".Version")
                return
            if key == "Fn::GetAtt":
                yield arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                return
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for name in _SUB_VAR.findall(text):
                    name = name.strip()
                    if name not in variables:
                        yield name.split(".", 1)[0] if not name.startswith("AWS::") else name
                yield from references(variables)
                return
        for v in value.values():
            yield from references(v)
