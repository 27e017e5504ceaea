"""The cost table in docs/deploy.md is what scripts/deploy_cost.py computes from today's template.yaml and
bench/results (a change to a function's memory, the capacity range or a benchmark makes it stale), and
the script reads the template's wiring rather than a copy of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_script

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "deploy_cost.py"


@pytest.fixture(scope="module")
def cost() -> ModuleType:
    return load_script("deploy_cost")


def test_the_cost_table_in_the_deploy_doc_is_current() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_table_and_a_write_fixes_it(cost: ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a copy of the doc whose table was edited by hand
    doc = tmp_path / "deploy.md"
    doc.write_text((ROOT / "docs" / "deploy.md").read_text().replace("| **total** |", "| **sum** |"))
    monkeypatch.setattr(cost, "DOC", doc)

    # Then --check fails, a plain run rewrites only the block, and --check passes again
    assert cost.main(["--check"]) == 1
    assert cost.main([]) == 0
    assert cost.main(["--check"]) == 0
    assert doc.read_text() == (ROOT / "docs" / "deploy.md").read_text()


def test_a_rag_request_runs_the_workflow_tasks_in_the_asl_order(cost: ModuleType) -> None:
    assert cost.rag_path(cost.load_stack("prod")) == [
        ("GuardInput", "GuardFunction"), ("Retrieve", "RetrieveFunction"), ("GuardContext", "GuardFunction"),
        ("Generate", "GenerateFunction"), ("GuardOutput", "GuardFunction"),
    ]


def test_the_stage_and_egress_parameters_change_the_lines(cost: ModuleType) -> None:
    def lines(**parameters: str) -> dict[str, float]:
        stack = cost.load_stack("prod")
        stack.parameters |= parameters
        return {line.name: line.usd for line in cost.estimate(stack, 1_000_000, 0.3)[0]}

    prod, dev = lines(), lines(Stage="dev")
    assert "prod" == cost.load_stack("prod").parameters["Stage"]
    assert prod["Aurora Serverless v2"] == pytest.approx(2 * dev["Aurora Serverless v2"])  # the reader
    assert prod["NAT gateway"] == 0 and lines(ProviderEgress="nat")["NAT gateway"] > 32  # 730 h at 0.045
    assert all(usd >= 0 for usd in prod.values())


def test_nat_gateways_are_counted_one_per_az_in_prod_and_one_in_dev(cost: ModuleType) -> None:
    def nat(stage: str, egress: str) -> float:
        stack = cost.load_stack("prod")
        stack.parameters |= {"Stage": stage, "ProviderEgress": egress}
        traffic = cost.Traffic(1_000_000, 0.3, [], {})  # _network reads the request counts only
        (line,) = [ln for ln in cost._network(stack, traffic) if ln.name == "NAT gateway"]
        return line.usd

    # the same provider bytes are processed either way; prod pays a second NAT gateway's hours
    assert nat("prod", "nat") - nat("dev", "nat") == pytest.approx(cost.HOURS_PER_MONTH * cost.NAT_HOUR)
    assert nat("prod", "none") == nat("dev", "none") == 0


def test_the_api_line_prices_the_api_the_template_declares(cost: ModuleType) -> None:
    def api_line(stack: object) -> object:
        return next(line for line in cost.estimate(stack, 1_000_000, 0.3)[0] if line.name.startswith("API Gateway"))

    # Given the template's REST API with response streaming: 3.50 USD per million, nothing more for ~10 KB answers
    stack = cost.load_stack("prod")
    month = 1_000_000 * cost.DAYS_PER_MONTH
    rest = api_line(stack)
    assert rest.name == "API Gateway (REST API, response streaming)" and rest.usd == pytest.approx(month * 3.5e-6)
    # When the same API is declared as an HTTP API, it is priced at 1.00 USD per million
    (lid,) = [k for k, r in stack.template["Resources"].items() if r["Type"] == "AWS::Serverless::Api"]
    api = stack.template["Resources"][lid]
    props = dict(api["Properties"])
    props["AccessLogSettings"] = props.pop("AccessLogSetting")
    stack.template["Resources"][lid] = {**api, "Type": "AWS::Serverless::HttpApi", "Properties": props}
    http = api_line(stack)
    assert http.name == "API Gateway (HTTP API)" and http.usd == pytest.approx(month * 1e-6)


def test_rds_proxy_bills_the_capacity_it_fronts_at_8_acu_at_least(cost: ModuleType) -> None:
    def proxy(requests_per_day: int = 1_000_000, **parameters: str) -> float:
        stack = cost.load_stack("prod")
        stack.parameters |= parameters
        return next(line.usd for line in cost.estimate(stack, requests_per_day, 0.3)[0] if line.name == "RDS Proxy")

    assert proxy(DatabaseMaxCapacity="2") == pytest.approx(8 * 730 * 0.015)  # 2 instances x 2 ACU: the minimum
    assert proxy() >= 8 * 730 * 0.015
    assert proxy(10_000_000) > 8 * 730 * 0.015  # busier: the capacity it fronts, past the minimum
