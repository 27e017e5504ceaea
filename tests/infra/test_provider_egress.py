"""ProviderEgress in the template: the functions are told which egress they have (the router skips what
they cannot reach), and with `nat` each private subnet routes to a NAT gateway, in its own AZ in prod."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.config import load_settings
from stratus_tools.local.template import function_properties

ANYWHERE = "0.0.0.0/0"


class Deployed:
    """The resources one combination of parameters creates, with Ref/Fn::If resolved against it."""

    def __init__(self, template: dict[str, Any], **parameters: str) -> None:
        self.template = template
        self.parameters = {n: p.get("Default") for n, p in template["Parameters"].items()} | parameters
        self.resources = {lid: r for lid, r in template["Resources"].items() if self.holds(r.get("Condition"))}

    def holds(self, condition: str | None) -> bool:
        return condition is None or bool(self._eval(self.template["Conditions"][condition]))

    def _eval(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        (key, arg), = node.items()
        if key == "Fn::Equals":
            return str(self._eval(arg[0])) == str(self._eval(arg[1]))
        if key == "Fn::And":
            return all(self._eval(a) for a in arg)
        if key == "Fn::Or":
            return any(self._eval(a) for a in arg)
        if key == "Fn::Not":
            return not self._eval(arg[0])
        if key == "Condition":
            return self.holds(arg)
        if key == "Ref":
            return self.parameters.get(arg, node)
        raise AssertionError(f"unexpected {key} in a condition")

    def ref(self, value: Any) -> str:
        """The logical id a property points at (through Fn::If), which must exist in this combination."""
        if "Fn::If" in value:
            condition, yes, no = value["Fn::If"]
            value = yes if self.holds(condition) else no
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"][0]
        else:
            target = value["Ref"]
        assert target in self.resources, f"{target} is referenced but not created"
        return target

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {lid: r.get("Properties", {}) for lid, r in self.resources.items() if r["Type"] == type_}

    def route_table(self, subnet: str) -> str:
        (table,) = [self.ref(a["RouteTableId"]) for a in self.of_type("AWS::EC2::SubnetRouteTableAssociation").values()
                    if self.ref(a["SubnetId"]) == subnet]
        return table

    def default_route(self, subnet: str) -> dict[str, Any] | None:
        table = self.route_table(subnet)
        routes = [r for r in self.of_type("AWS::EC2::Route").values()
                  if self.ref(r["RouteTableId"]) == table and r.get("DestinationCidrBlock") == ANYWHERE]
        assert len(routes) <= 1, subnet
        return routes[0] if routes else None

    def az(self, subnet: str) -> Any:
        return self.resources[subnet]["Properties"]["AvailabilityZone"]


def _private_subnets(template: dict[str, Any]) -> list[str]:
    return [s["Ref"] for s in template["Globals"]["Function"]["VpcConfig"]["SubnetIds"]]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_without_egress_nothing_routes_to_the_internet(template: dict[str, Any], stage: str) -> None:
    stack = Deployed(template, Stage=stage, ProviderEgress="none")
    assert not stack.of_type("AWS::EC2::NatGateway") and not stack.of_type("AWS::EC2::InternetGateway")
    assert all(stack.default_route(s) is None for s in _private_subnets(template))


def test_prod_with_nat_has_one_nat_gateway_per_az_and_each_subnet_uses_its_own(template: dict[str, Any]) -> None:
    stack = Deployed(template, Stage="prod", ProviderEgress="nat")
    subnets = _private_subnets(template)
    nats = stack.of_type("AWS::EC2::NatGateway")
    assert len(nats) == len(subnets) == 2

    used = set()
    for subnet in subnets:
        route = stack.default_route(subnet)
        assert route is not None, f"{subnet} has no default route"
        nat = stack.ref(route["NatGatewayId"])
        public = stack.ref(nats[nat]["SubnetId"])
        assert stack.az(public) == stack.az(subnet), f"{subnet} routes to a NAT in another AZ"
        used.add(nat)
    assert used == set(nats)
    # each NAT sits in a public subnet routed to the internet gateway, with its own address
    for props in nats.values():
        route = stack.default_route(stack.ref(props["SubnetId"]))
        assert route is not None and stack.ref(route["GatewayId"]) in stack.of_type("AWS::EC2::InternetGateway")
    assert len({stack.ref(p["AllocationId"]) for p in nats.values()}) == 2


def test_dev_with_nat_shares_one_nat_gateway(template: dict[str, Any]) -> None:
    stack = Deployed(template, Stage="dev", ProviderEgress="nat")
    (nat,) = stack.of_type("AWS::EC2::NatGateway")
    for subnet in _private_subnets(template):
        route = stack.default_route(subnet)
        assert route is not None and stack.ref(route["NatGatewayId"]) == nat


@pytest.mark.parametrize(("stage", "egress"), [("dev", "none"), ("dev", "nat"), ("prod", "none"), ("prod", "nat")])
def test_s3_stays_on_its_gateway_endpoint_from_every_private_subnet(template: dict[str, Any], stage: str,
                                                                    egress: str) -> None:
    # A route table without the endpoint would send S3 traffic to the NAT (billed per GB) or nowhere.
    stack = Deployed(template, Stage=stage, ProviderEgress=egress)
    (endpoint,) = [p for p in stack.of_type("AWS::EC2::VPCEndpoint").values() if p["VpcEndpointType"] == "Gateway"]
    tables = {stack.ref(t) for t in endpoint["RouteTableIds"]}
    assert {stack.route_table(s) for s in _private_subnets(template)} <= tables


@pytest.mark.parametrize("egress", ["none", "nat"])
def test_every_function_is_told_its_provider_egress(template: dict[str, Any], egress: str) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["STRATUS_PROVIDER_EGRESS"] == {"Ref": "ProviderEgress"}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            env = function_properties(template, logical_id)["Environment"]["Variables"]
            assert env["STRATUS_PROVIDER_EGRESS"] == {"Ref": "ProviderEgress"}, logical_id
    assert egress in template["Parameters"]["ProviderEgress"]["AllowedValues"]
    assert load_settings(provider_egress=egress).provider_egress == egress
