"""What a month of requests costs on AWS, from template.yaml and the recorded benchmarks.

    .venv/bin/python scripts/deploy_cost.py            # rewrite the table in docs/deploy.md
    .venv/bin/python scripts/deploy_cost.py --check    # exit 1 when docs/deploy.md is stale
    .venv/bin/python scripts/deploy_cost.py --print    # print the table, change nothing

Read from template.yaml (with samconfig.toml's parameter overrides for --env): each function's MemorySize
(Globals applied), the query workflow's type and its task states (the ASL), the API's type (HTTP API or REST
API, and whether its integrations stream), the Aurora capacity parameters and the instances the stage
creates, RDS Proxy if present, the NAT gateways the stage creates, the interface endpoints and their subnets,
alarms, keys and secrets. Durations come from bench/results/*.json (cold starts: bench/cold_start.py's init
through the Runtime Interface Client);
where nothing was measured the figure is a named assumption below. Each line of the table says which.
Prices are us-east-1 list prices without free tiers. Stdlib and PyYAML only (with stratus_tools.local.template).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus_tools.generated_docs import update
from stratus_tools.local.template import function_properties, load_template

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "deploy.md"
BEGIN, END = "<!-- cost:begin -->", "<!-- cost:end -->"

# --- prices: us-east-1 list prices (USD), as published on each page below, checked 2026-12-06 ------------
PRICES_CHECKED = "2026-12-06"
LAMBDA_ARM_GB_S = 0.0000133334  # aws.amazon.com/lambda/pricing: Arm, first 7.5 billion GB-s a month
LAMBDA_REQUEST = 0.20 / 1e6  # same page; INIT (cold start) duration is billed like invocation time
# Same page, SnapStart for Python: the snapshot of each published version is cached (per GB of the function's
# memory, per second, at least 3 hours), and each environment restored from it costs per GB restored.
SNAPSTART_CACHE_GB_S = 0.0000015046
SNAPSTART_RESTORE_GB = 0.0001397998
HTTP_API_REQUEST = 1.00 / 1e6  # aws.amazon.com/api-gateway/pricing: HTTP API, first 300 M a month, per 512 KB
HTTP_API_TIER = 300e6
REST_API_REQUEST = 3.50 / 1e6  # same page: REST API, first 333 M a month
REST_API_TIER = 333e6
# REST API response streaming (responseTransferMode STREAM): a streamed response is billed as one request per
# 10 MB, rounded up, so only bytes past the first 10 MB of a response cost more (another request each 10 MB).
STREAM_BILLING_MB = 10
SFN_EXPRESS_REQUEST = 1.00 / 1e6  # aws.amazon.com/step-functions/pricing: Express workflows
SFN_EXPRESS_GB_S = 0.06 / 3600  # same page: first 1,000 GB-hours; duration rounded up to 100 ms, memory to 64 MB
SFN_STANDARD_TRANSITION = 0.025 / 1000  # same page: Standard workflows, per state transition
AURORA_ACU_HOUR = 0.12  # aws.amazon.com/rds/aurora/pricing: Serverless v2, Aurora Standard
# aws.amazon.com/rds/proxy/pricing: in front of provisioned instances 0.015 per vCPU-hour (at least 2 vCPUs);
# in front of Aurora Serverless v2 (this template) 0.015 per ACU-hour of the capacity it fronts (every
# instance of the cluster), with a minimum charge of 8 ACUs.
RDS_PROXY_ACU_HOUR = 0.015
RDS_PROXY_MIN_ACU = 8
NAT_HOUR, NAT_GB = 0.045, 0.045  # aws.amazon.com/vpc/pricing: NAT gateway hour, data processed
ENDPOINT_AZ_HOUR, ENDPOINT_GB = 0.01, 0.01  # aws.amazon.com/privatelink/pricing: interface endpoint per AZ
LOGS_INGEST_GB = 0.50  # aws.amazon.com/cloudwatch/pricing: Standard log ingestion (Lambda's first tier too)
XRAY_TRACE = 5.00 / 1e6  # aws.amazon.com/xray/pricing: traces recorded (Tracing: Active's platform segments;
# the template's default OtelExporterEndpoint is empty, so no spans are exported and none are priced here)
KMS_KEY_MONTH = 1.00  # aws.amazon.com/kms/pricing: customer managed key
ALARM_METRIC_MONTH = 0.10  # aws.amazon.com/cloudwatch/pricing: standard-resolution alarm, per metric it reads
DASHBOARD_MONTH = 3.00  # same page: per dashboard
SECRET_MONTH = 0.40  # aws.amazon.com/secrets-manager/pricing: per secret

# --- assumptions: no measurement exists for these ---------------------------------------------------------
PROVIDER_SECONDS = 1.5  # a non-streamed completion of a few hundred tokens from a "fast" model, waited for
COLD_START_SHARE = 0.01  # share of invocations that start a new execution environment
DB_CPU_MS_PER_REQUEST = 5.0  # key lookup, admission, settlement, generation and trace rows: database CPU
ACU_PER_VCPU = 4  # 1 ACU ~ 2 GiB with the r-class share of CPU (8 GiB per vCPU): a busy vCPU ~ 4 ACU
ACU_UTILISATION = 0.7  # Aurora keeps headroom: the capacity it holds runs at ~70% busy
PLATFORM_LOG_BYTES = 700  # platform.start + platform.report as JSON, per invocation
GATEWAY_LOG_BYTES = 900  # the gateway's EMF line (latency, spend, tokens) and its request log, per request
ENDPOINT_KB_PER_RAG = 12  # StartSyncExecution request and result through the sync-states endpoint
PROVIDER_KB_PER_REQUEST = 10  # prompt and answer to an internet provider (through the NAT when there is one)
RESPONSE_KB = 10  # a chat or RAG answer as the API returns it: far under the 10 MB a streamed request includes
XRAY_RESERVOIR_PER_S, XRAY_RATE = 1.0, 0.05  # X-Ray's default sampling rule: 1 request/s, then 5%

HOURS_PER_MONTH = 730
DAYS_PER_MONTH = HOURS_PER_MONTH / 24


@dataclass
class Line:
    name: str
    quantity: str
    usd: float
    source: str
    per_request: dict[str, float] = field(default_factory=dict)  # "chat"/"rag": USD per request of that kind


@dataclass
class Stack:
    template: dict[str, Any]
    parameters: dict[str, Any]
    env: str

    def value(self, v: Any) -> Any:
        if isinstance(v, dict) and "Ref" in v and v["Ref"] in self.parameters:
            return self.parameters[v["Ref"]]
        return v

    def condition(self, name: str | None) -> bool:
        return True if name is None else self._eval(self.template["Conditions"][name])

    def _eval(self, c: Any) -> Any:
        if isinstance(c, dict):
            (key, arg), = c.items()
            if key == "Fn::Equals":
                return str(self._eval(arg[0])) == str(self._eval(arg[1]))
            if key == "Fn::Not":
                return not self._eval(arg[0])
            if key == "Fn::And":
                return all(self._eval(a) for a in arg)
            if key == "Fn::Or":
                return any(self._eval(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Ref":
                return self.parameters[arg]
        return c

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template["Resources"].items()
                if r["Type"] == type_ and self.condition(r.get("Condition"))}

    def memory_gb(self, function: str) -> float:
        return int(function_properties(self.template, function)["MemorySize"]) / 1024


def load_stack(env: str) -> Stack:
    template = load_template(ROOT / "template.yaml")
    parameters = {name: p.get("Default") for name, p in template["Parameters"].items()}
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = config.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    parameters |= dict(item.split("=", 1) for item in shlex.split(overrides))
    return Stack(template, parameters, env)


def bench(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())


def rag_path(stack: Stack) -> list[tuple[str, str]]:
    """(state, function) of each task a RAG request runs, walking the ASL as a RAG request that passes the
    rails would: a Choice takes its `$.mode == "rag"` branch."""
    machine = next(iter(stack.resources("AWS::Serverless::StateMachine").values()))["Properties"]
    asl = json.loads((ROOT / machine["DefinitionUri"]).read_text())
    subs = machine["DefinitionSubstitutions"]
    path, name = [], asl["StartAt"]
    while name:
        state = asl["States"][name]
        if state["Type"] == "Task":
            key = state["Resource"].removeprefix("${").removesuffix("}")
            path.append((name, subs[key]["Fn::GetAtt"][0]))
            name = state.get("Next")
        elif state["Type"] == "Choice":
            name = next(c["Next"] for c in state["Choices"] if c.get("StringEquals") == "rag")
        else:
            name = state.get("Next")
    return path


def task_seconds() -> dict[str, tuple[float, str]]:
    """Each workflow task state's billed time and where the figure comes from."""
    guard, retrieval = bench("guard_latency")["warm"], bench("retrieval_scale")["sizes"]["100000"]["latency"]
    generate_own = bench("workflow_overhead")["chat"]["tasks"]["p50_ms"]
    return {
        "GuardInput": (guard["input_step_default/short"]["p50_ms"] / 1e3,
                       "guard_latency input_step_default/short p50"),
        # The one-connection figure: the two sides overlapped on the bench's 2 cores, unmeasured on a
        # 1024 MB function's share of one vCPU.
        "Retrieve": (retrieval["hybrid_one_connection"]["with_query_embedding"]["p50_ms"] / 1e3,
                     "retrieval_scale hybrid (sides in turn) p50 at 100k chunks, with the query embedding"),
        "GuardContext": (guard["injection/long"]["p50_ms"] / 1e3, "guard_latency injection/long p50"),
        "Generate": (PROVIDER_SECONDS + generate_own / 1e3,
                     "assumed provider time + workflow_overhead chat task p50 (offline provider)"),
        "GuardOutput": (guard["output_step_default/long"]["p50_ms"] / 1e3,
                        "guard_latency output_step_default/long p50 (groundedness runs in the gateway after it)"),
    }


@dataclass
class Traffic:
    """A month of requests and what each kind runs."""

    requests_per_day: float
    rag_share: float
    path: list[tuple[str, str]]  # (task state, function) of a RAG request's workflow
    tasks: dict[str, tuple[float, str]]  # task state: (seconds, source)

    @property
    def month(self) -> float:
        return self.requests_per_day * DAYS_PER_MONTH

    @property
    def rag(self) -> float:
        return self.month * self.rag_share

    @property
    def chat(self) -> float:
        return self.month - self.rag

    @property
    def rps(self) -> float:
        return self.requests_per_day / 86400

    @property
    def workflow_seconds(self) -> float:
        overhead = bench("workflow_overhead")["rag"]["overhead"]["p50_ms"] / 1e3
        return sum(self.tasks[state][0] for state, _ in self.path) + overhead

    def invocations(self) -> dict[str, dict[str, int]]:
        """Function: invocations per plain chat and per RAG request."""
        out = {"GatewayFunction": {"chat": 1, "rag": 1}}
        for _, function in self.path:
            out.setdefault(function, {"chat": 0, "rag": 0})["rag"] += 1
        return out


def estimate(stack: Stack, requests_per_day: float, rag_share: float) -> tuple[list[Line], Traffic]:
    path, tasks = rag_path(stack), task_seconds()
    unknown = {state for state, _ in path} - set(tasks)
    if unknown:
        raise SystemExit(f"the RAG path has task states with no duration here: {sorted(unknown)}")
    traffic = Traffic(requests_per_day, rag_share, path, tasks)
    lines = [_api(stack, traffic), *_lambdas(stack, traffic), _workflow(stack, traffic), *_database(stack, traffic),
             *_network(stack, traffic), *_observability(stack, traffic)]
    return lines, traffic


def _gateway_api(stack: Stack) -> tuple[str, dict[str, Any]]:
    """The template's one API Gateway API: (its type, its properties)."""
    (api,) = [r for r in stack.template["Resources"].values()
              if r["Type"] in ("AWS::Serverless::HttpApi", "AWS::Serverless::Api")]
    return api["Type"], api.get("Properties") or {}


def _streams(value: Any) -> bool:
    """Whether an API's definition has an integration with responseTransferMode STREAM."""
    if isinstance(value, dict):
        return value.get("responseTransferMode") == "STREAM" or any(_streams(v) for v in value.values())
    return isinstance(value, list) and any(_streams(v) for v in value)


def _api(stack: Stack, traffic: Traffic) -> Line:
    api_type, props = _gateway_api(stack)
    http = api_type == "AWS::Serverless::HttpApi"
    price, tier = (HTTP_API_REQUEST, HTTP_API_TIER) if http else (REST_API_REQUEST, REST_API_TIER)
    if traffic.month > tier:
        raise SystemExit(f"{traffic.month / 1e6:.0f} M requests a month pass the first price tier ({tier / 1e6:.0f} M)")
    source = f"{api_type} in template.yaml: {price * 1e6:.2f} USD per million (first {tier / 1e6:.0f} M a month)"
    name = f"API Gateway ({'HTTP' if http else 'REST'} API"
    if not http and _streams(props.get("DefinitionBody")):
        name += ", response streaming"
        extra = max(0, math.ceil(RESPONSE_KB / 1024 / STREAM_BILLING_MB) - 1)  # further requests per response
        source += (f"; streamed responses count one request per {STREAM_BILLING_MB} MB, answers of "
                   f"~{RESPONSE_KB} KB add {extra}")
        price *= 1 + extra
    return Line(name + ")", f"{traffic.month / 1e6:.1f} M requests", traffic.month * price, source,
                {"chat": price, "rag": price})


def _lambdas(stack: Stack, traffic: Traffic) -> list[Line]:
    """Per function: invocations x (duration + cold starts) x memory, and the request price."""
    gateway = bench("gateway_overhead")["overhead"]["concurrency_1"]
    # Groundedness only flags by default: the gateway runs it after a RAG answer has gone (billed all the same).
    grounding_s = bench("guard_latency")["warm"]["after_response/long"]["p50_ms"] / 1e3
    cold = bench("cold_start")["functions"]  # by logical id: init through the RIC (or the Web Adapter)
    pii_load_s = bench("guard_latency")["first_use"]["pii"]["load_ms"] / 1e3
    seconds: dict[str, dict[str, float]] = {"GatewayFunction": {
        "chat": gateway["stratus+guard"]["overhead_p50_ms"] / 1e3 + PROVIDER_SECONDS,
        "rag": gateway["stratus"]["overhead_p50_ms"] / 1e3 + traffic.workflow_seconds + grounding_s}}  # it waits
    for state, function in traffic.path:
        seconds.setdefault(function, {"chat": 0.0, "rag": 0.0})["rag"] += traffic.tasks[state][0]
    invocations = traffic.invocations()
    lines = []
    for function, run in seconds.items():
        props = function_properties(stack.template, function)
        gb, folder = stack.memory_gb(function), props["CodeUri"].rstrip("/").split("/")[-1]
        init_s = _init_seconds(cold, function)
        if {"Ref": "GuardLayer"} in props["Layers"]:
            init_s += pii_load_s  # the PII model loads on the first invocation
        n = invocations[function]
        per = {kind: (run[kind] + n[kind] * COLD_START_SHARE * init_s) * gb * LAMBDA_ARM_GB_S
               + n[kind] * LAMBDA_REQUEST for kind in ("chat", "rag")}
        count = traffic.chat * n["chat"] + traffic.rag * n["rag"]
        average_ms = (traffic.chat * run["chat"] + traffic.rag * run["rag"]) / count * 1e3
        lines.append(Line(f"Lambda {folder} ({gb * 1024:.0f} MB arm64)",
                          f"{count / 1e6:.1f} M invocations, {average_ms:,.0f} ms average",
                          traffic.chat * per["chat"] + traffic.rag * per["rag"],
                          f"cold_start {function} init median at {COLD_START_SHARE:.0%} of invocations; "
                          + _duration_source(function, traffic), per))
    lines += _snapstart(stack)
    sampler = bench("eval_sampler")["cost_at_1m_requests_per_day"]
    gb = stack.memory_gb("EvalSamplerFunction")
    gb_s = sampler["sampler_lambda_seconds_per_day"] * traffic.requests_per_day / 1e6 * DAYS_PER_MONTH * gb
    lines.append(Line(f"Lambda eval_sampler ({gb * 1024:.0f} MB arm64)", f"{gb_s:,.0f} GB-s", gb_s * LAMBDA_ARM_GB_S,
                      f"eval_sampler scoring seconds at a {sampler['sample_rate']:.0%} sample "
                      "(the hosted judge is the provider's bill)"))
    return lines


def _snapstart(stack: Stack) -> list[Line]:
    """A SnapStart function's cached snapshot: one published version (the alias's) all month, whatever the
    traffic. Its restores are billed per environment its callers scale out to (only opted-in tenants reach
    GuardMultilingualFunction, whose traffic this table does not price), so they are named, not counted."""
    lines = []
    for function in stack.resources("AWS::Serverless::Function"):
        props = function_properties(stack.template, function)
        if (props.get("SnapStart") or {}).get("ApplyOn") != "PublishedVersions":
            continue
        gb, folder = stack.memory_gb(function), props["CodeUri"].rstrip("/").split("/")[-1]
        gb_s = gb * HOURS_PER_MONTH * 3600
        lines.append(Line(f"SnapStart cache, {folder} ({gb * 1024:.0f} MB)", f"1 version, {gb_s:,.0f} GB-s",
                          gb_s * SNAPSTART_CACHE_GB_S,
                          f"SnapStart in template.yaml; each restore adds {gb * SNAPSTART_RESTORE_GB:.5f} USD "
                          "(its callers' scale-out, not counted)"))
    return lines


def _init_seconds(cold: dict[str, Any], function: str) -> float:
    """The function's measured init (process start -> first /next, median), in seconds."""
    init = cold.get(function, {}).get("init_ms", {})
    if "median" not in init:
        raise SystemExit(f"bench/results/cold_start.json has no init for {function}: run `python -m bench.run "
                         "cold_start`")
    return float(init["median"]) / 1e3


def _duration_source(function: str, traffic: Traffic) -> str:
    if function == "GatewayFunction":
        return ("gateway_overhead c=1 p50 (stratus+guard for chat, stratus for RAG) + assumed provider time "
                "for chat, + the whole workflow for RAG (the gateway waits for it) + guard_latency "
                "after_response/long p50 (groundedness after a RAG answer)")
    return "; ".join(f"{state}: {traffic.tasks[state][1]}" for state, f in traffic.path if f == function)


def _workflow(stack: Stack, traffic: Traffic) -> Line:
    machine = next(iter(stack.resources("AWS::Serverless::StateMachine").values()))["Properties"]
    if machine.get("Type") == "EXPRESS":
        billed_s = math.ceil(traffic.workflow_seconds * 10) / 10
        per_run = SFN_EXPRESS_REQUEST + billed_s * (64 / 1024) * SFN_EXPRESS_GB_S
        return Line("Step Functions Express (query workflow)",
                    f"{traffic.rag / 1e6:.1f} M executions, {billed_s:.1f} s billed at 64 MB", traffic.rag * per_run,
                    "sum of the task figures + workflow_overhead rag overhead p50 (local interpreter)",
                    {"rag": per_run})
    per_run = (len(traffic.path) + 2) * SFN_STANDARD_TRANSITION
    return Line("Step Functions Standard (query workflow)", f"{traffic.rag / 1e6:.1f} M executions",
                traffic.rag * per_run, "state transitions of the RAG path", {"rag": per_run})


def _database(stack: Stack, traffic: Traffic) -> list[Line]:
    """Database CPU -> ACUs on the writer; a promotion-tier-1 reader follows the writer's capacity."""
    # The database's share: both sides' time, as measured one after the other (run at once, they overlap
    # in wall time but the database still does both).
    hybrid = bench("retrieval_scale")["sizes"]["100000"]["latency"]["hybrid_one_connection"]
    retrieval_db_s = hybrid["excluding_query_embedding"]["p50_ms"] / 1e3
    busy_vcpu = traffic.rps * (traffic.rag_share * retrieval_db_s + DB_CPU_MS_PER_REQUEST / 1e3)
    low, high = float(stack.parameters["DatabaseMinCapacity"]), float(stack.parameters["DatabaseMaxCapacity"])
    writer_acu = min(max(busy_vcpu * ACU_PER_VCPU / ACU_UTILISATION, low), high)
    instances = len(stack.resources("AWS::RDS::DBInstance"))
    acu_hours = writer_acu * instances * HOURS_PER_MONTH
    aurora = Line("Aurora Serverless v2",
                  f"{writer_acu:.1f} ACU x {instances} instance(s) = {acu_hours:,.0f} ACU-hours",
                  acu_hours * AURORA_ACU_HOUR,
                  f"{busy_vcpu:.2f} busy vCPU: retrieval_scale hybrid (one connection) p50 at 100k chunks without "
                  f"the query embedding per RAG request + {DB_CPU_MS_PER_REQUEST:g} ms per request; "
                  f"capacity {low:g}-{high:g} ACU")
    billed_acu = max(writer_acu * instances, RDS_PROXY_MIN_ACU)
    proxy_usd = billed_acu * HOURS_PER_MONTH * RDS_PROXY_ACU_HOUR
    if stack.resources("AWS::RDS::DBProxy"):
        proxy = Line("RDS Proxy", f"{billed_acu:.1f} ACU x {HOURS_PER_MONTH} hours", proxy_usd,
                     f"AWS::RDS::DBProxy in template.yaml: {RDS_PROXY_ACU_HOUR} USD per ACU-hour of the Aurora "
                     f"Serverless v2 capacity it fronts (every instance), billed at {RDS_PROXY_MIN_ACU} ACU at least")
    else:
        proxy = Line("RDS Proxy", "none in template.yaml", 0.0,
                     f"one in front of this cluster would bill {proxy_usd:,.2f} USD")
    return [aurora, proxy]


def _network(stack: Stack, traffic: Traffic) -> list[Line]:
    endpoints = [r for r in stack.resources("AWS::EC2::VPCEndpoint").values()
                 if r["Properties"].get("VpcEndpointType") == "Interface"]
    az_hours = sum(len(r["Properties"]["SubnetIds"]) for r in endpoints) * HOURS_PER_MONTH
    endpoint_gb = traffic.rag * ENDPOINT_KB_PER_RAG / 1e6
    lines = [Line("VPC interface endpoints", f"{len(endpoints)} endpoints, {az_hours:,.0f} AZ-hours, "
                  f"{endpoint_gb:,.0f} GB", az_hours * ENDPOINT_AZ_HOUR + endpoint_gb * ENDPOINT_GB,
                  "AWS::EC2::VPCEndpoint (Interface) x SubnetIds in template.yaml")]
    nat_gb = traffic.month * PROVIDER_KB_PER_REQUEST / 1e6
    nats = len(stack.resources("AWS::EC2::NatGateway"))
    if nats:
        lines.append(Line("NAT gateway", f"{nats} x {HOURS_PER_MONTH} hours, {nat_gb:,.0f} GB",
                          nats * HOURS_PER_MONTH * NAT_HOUR + nat_gb * NAT_GB,
                          "ProviderEgress=nat: the NAT gateways the stage creates; provider traffic assumed"))
    else:
        with_nat = Stack(stack.template, {**stack.parameters, "ProviderEgress": "nat"}, stack.env)
        would = len(with_nat.resources("AWS::EC2::NatGateway"))
        nat_usd = would * HOURS_PER_MONTH * NAT_HOUR + nat_gb * NAT_GB
        lines.append(Line("NAT gateway", f"none (ProviderEgress={stack.parameters['ProviderEgress']})", 0.0,
                          f"ProviderEgress=nat would add {nat_usd:,.2f} USD ({would} NAT gateway(s))"))
    return lines


def _observability(stack: Stack, traffic: Traffic) -> list[Line]:
    invocations = sum(traffic.chat * n["chat"] + traffic.rag * n["rag"] for n in traffic.invocations().values())
    log_gb = (traffic.month * (GATEWAY_LOG_BYTES + _access_log_bytes(stack)) + invocations * PLATFORM_LOG_BYTES) / 1e9
    traces = (XRAY_RESERVOIR_PER_S + XRAY_RATE * max(traffic.rps - XRAY_RESERVOIR_PER_S, 0)) * 3600 * HOURS_PER_MONTH
    alarm_metrics = sum(len([q for q in a["Properties"].get("Metrics", []) if "MetricStat" in q]) or 1
                        for a in stack.resources("AWS::CloudWatch::Alarm").values())
    fixed = (alarm_metrics * ALARM_METRIC_MONTH + len(stack.resources("AWS::CloudWatch::Dashboard")) * DASHBOARD_MONTH
             + len(stack.resources("AWS::KMS::Key")) * KMS_KEY_MONTH
             + len(stack.resources("AWS::SecretsManager::Secret")) * SECRET_MONTH)
    return [
        Line("CloudWatch Logs ingestion", f"{log_gb:,.0f} GB", log_gb * LOGS_INGEST_GB,
             "assumed bytes per invocation and request; the access log line from its Format"),
        Line("X-Ray traces", f"{traces / 1e6:.1f} M traces", traces * XRAY_TRACE,
             "Tracing: Active, X-Ray's default sampling rule"),
        Line("Alarms, dashboard, KMS key, secrets", f"{alarm_metrics} alarm metrics", fixed,
             "counted in template.yaml"),
    ]


def _access_log_bytes(stack: Stack) -> int:
    _, props = _gateway_api(stack)
    settings = props.get("AccessLogSettings") or props.get("AccessLogSetting")  # HTTP API / REST API
    return len(settings["Format"]) if settings else 0  # a placeholder is about as long as its value


def render(stack: Stack, requests_per_day: float, rag_share: float) -> str:
    lines, traffic = estimate(stack, requests_per_day, rag_share)
    total = sum(line.usd for line in lines)
    overrides = " ".join(f"{k}={stack.parameters[k]}" for k in ("Stage", "DatabaseMinCapacity",
                                                               "DatabaseMaxCapacity", "ProviderEgress"))
    out = [
        BEGIN,
        "<!-- generated by scripts/deploy_cost.py: edit the script, not this table -->",
        f"**{requests_per_day:,.0f} requests a day** ({traffic.month / 1e6:.1f} M a month, {traffic.rps:.1f}/s "
        f"on average), {1 - rag_share:.0%} plain chat and {rag_share:.0%} RAG; the `{stack.env}` "
        f"stack of samconfig.toml ({overrides}); us-east-1 list prices of {PRICES_CHECKED}, no free tier.",
        "",
        "| line | quantity a month | USD a month | figures used |",
        "|---|---|---:|---|",
    ]
    out += [f"| {ln.name} | {ln.quantity} | {ln.usd:,.2f} | {ln.source} |" for ln in lines]
    out.append(f"| **total** | | **{total:,.2f}** | {total / traffic.month * 1000:.3f} USD per 1,000 requests |")
    per = {kind: sum(ln.per_request.get(kind, 0.0) for ln in lines) for kind in ("chat", "rag")}
    out += [
        "",
        f"Per request, the lines that grow with traffic: plain chat {per['chat'] * 1e6:,.0f} USD per million, "
        f"RAG {per['rag'] * 1e6:,.0f} USD per million (API, Lambda, workflow).",
        "",
        "Assumed, not measured: provider time per completion "
        f"{PROVIDER_SECONDS:g} s; cold starts on {COLD_START_SHARE:.0%} of invocations; "
        f"{DB_CPU_MS_PER_REQUEST:g} ms of database CPU per request besides retrieval; {ACU_PER_VCPU} ACU per busy "
        f"vCPU, held at {ACU_UTILISATION:.0%} busy; {PLATFORM_LOG_BYTES} log bytes per invocation and "
        f"{GATEWAY_LOG_BYTES} more per request; {ENDPOINT_KB_PER_RAG} KB per RAG request through the "
        f"sync-states endpoint; {PROVIDER_KB_PER_REQUEST} KB per request to a provider over a NAT; answers of "
        f"{RESPONSE_KB} KB, far under the {STREAM_BILLING_MB} MB a streamed REST API response is billed by "
        "(and under the 6 MB of a streamed Lambda response that is free), so streaming adds nothing; a streamed "
        "answer keeps the gateway running as long as a non-streamed one (the same provider time).",
        END,
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="prod", help="samconfig.toml environment whose overrides apply")
    ap.add_argument("--requests-per-day", type=float, default=1_000_000)
    ap.add_argument("--rag-share", type=float, default=0.3)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail when docs/deploy.md is stale")
    mode.add_argument("--print", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    block = render(load_stack(args.env), args.requests_per_day, args.rag_share)
    if args.print:
        sys.stdout.write(block)
        return 0
    return update(DOC, block, BEGIN, END, check=args.check, command=".venv/bin/python scripts/deploy_cost.py")


if __name__ == "__main__":
    raise SystemExit(main())
