"""Per-request state the gateway carries from the edge to the trace row: the request id, when it
started, step timings, who called, and the trace fields routes fill in as they learn them.

It lives in the ASGI scope (`scope["state"]["stratus"]`), so pure-ASGI middleware, dependencies,
routes and exception handlers all see the same object without a context variable crossing threads.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg
    from starlette.requests import Request

    from stratus.gateway.admission import Admission
    from stratus.gateway.keys import Principal
    from stratus.gateway.traces import TraceRecord

log = logging.getLogger(__name__)

# A client's own id is echoed only when it is short and plain: it lands in logs, headers and traces.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# On Lambda, work stops this long before the invocation's deadline: enough to send an error and settle.
INVOCATION_MARGIN_S = 1.0


def request_id_from(header: str | None) -> str:
    if header and _SANE_ID.match(header):
        return header
    return f"req_{uuid.uuid4().hex}"


@dataclass
class RequestContext:
    request_id: str
    route: str
    method: str
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)  # TraceRecord fields set by the route
    headers: dict[str, str] = field(default_factory=dict)  # added to the response (x-ratelimit-*)
    admitted: bool = False  # admission reserved tokens/budget: settle them after the response
    # The reservation's own key: a client may reuse its x-request-id (a retry while the first attempt
    # still runs), and that must not collide with a reservation not yet settled.
    reservation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    status_code: int | None = None  # as sent to the client
    spent_tokens: int = 0  # what settles the reservation (0 releases it: a failed request costs nothing)
    spent_usd: float = 0.0
    finished: bool = False  # settle + trace scheduled (once per request)
    deferred: list[Any] = field(default_factory=list)  # writes that wait for the response: f(conn) -> None
    # Output rails the answer's guard left for after the response: f(conn) -> their verdicts, for the trace.
    after_rails: Callable[[psycopg.Connection], list[Any]] | None = None
    emit_metrics: bool = False  # SpendUsd and LatencyMs as EMF log lines after the response (settings)
    deadline_at: float | None = None  # epoch s: when Lambda ends this invocation (None: no such limit)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def step(self, name: str, since: float) -> None:
        self.timings_ms[name] = round((time.perf_counter() - since) * 1000, 3)

    def budget_s(self, limit_s: float) -> float:
        """Seconds left of a `limit_s` budget counted from the request's start, cut to end INVOCATION_MARGIN_S
        before the invocation's own deadline (so the answer, or its error, and the settle still happen)."""
        left = limit_s - self.elapsed_ms() / 1000
        if self.deadline_at is not None:
            left = min(left, self.deadline_at - INVOCATION_MARGIN_S - time.time())
        return left

    def deadline_ms(self, limit_s: float) -> int:
        """The same budget as an epoch-ms deadline, the form tasks and workflow payloads carry."""
        return int((time.time() + self.budget_s(limit_s)) * 1000)


def new_context(scope: MutableMapping[str, Any], request_id: str) -> RequestContext:
    ctx = RequestContext(request_id=request_id, route=scope.get("path", ""), method=scope.get("method", ""),
                         deadline_at=scope.get("state", {}).get("deadline_at"))
    settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
    ctx.emit_metrics = bool(getattr(settings, "emit_metrics", False))
    scope.setdefault("state", {})["stratus"] = ctx
    return ctx


def context_of(request: Request) -> RequestContext:
    """The request's context (set by the middleware; created here if the app runs without it)."""
    state = request.scope.setdefault("state", {})
    ctx: RequestContext | None = state.get("stratus")
    if ctx is None:
        ctx = new_context(request.scope, request_id_from(request.headers.get("x-request-id")))
    return ctx


# --- admission and the after-response work ----------------------------------------------------------
def admit_or_raise(conn: psycopg.Connection, ctx: RequestContext, principal: Principal, *, estimated_tokens: int,
                   max_cost_usd: float, settings: Any) -> None:
    """Count the request against the key's and tenant's limits and reserve its worst-case cost; 429
    (rate_limited or budget_exhausted, with x-ratelimit-* and retry-after) when refused."""
    decision = admit_request(conn, ctx, principal, estimated_tokens=estimated_tokens, max_cost_usd=max_cost_usd,
                             settings=settings)
    raise_if_refused(ctx, decision)


def admit_request(conn: psycopg.Connection, ctx: RequestContext, principal: Principal, *, estimated_tokens: int,
                  max_cost_usd: float, settings: Any, in_transaction: bool = False) -> Admission:
    """The admission decision (admit_or_raise's first half), in the caller's tenant transaction when
    `in_transaction`; what it reserved is settled only once `raise_if_refused` has recorded it."""
    from stratus.gateway.admission import admit
    from stratus.spans import span

    t = time.perf_counter()
    with span("admission", tenant_id=principal.tenant_id, estimated_tokens=estimated_tokens) as step:
        decision = admit(conn, principal, request_id=ctx.reservation_id, estimated_tokens=estimated_tokens,
                         max_cost_usd=max_cost_usd, settings=settings, in_transaction=in_transaction)
        step.annotate(admitted=decision.admitted, refused_by=decision.reason)
    ctx.step("admit", t)
    return decision


def raise_if_refused(ctx: RequestContext, decision: Admission) -> None:
    """admit_or_raise's second half: the 429 of a refusal, else the reservation noted for settling."""
    from stratus.gateway import errors

    ctx.headers.update(decision.headers)
    if not decision.admitted:
        if decision.reason == "budget":
            raise errors.budget_exhausted(decision.message, headers=decision.headers)
        raise errors.rate_limited(decision.message, kind=decision.reason or "requests",
                                  retry_after_s=decision.retry_after_s, headers=decision.headers)
    ctx.admitted = True
    ctx.reserved_tokens, ctx.reserved_usd = decision.reserved_tokens, decision.reserved_usd


def bill_worst_case(ctx: RequestContext) -> None:
    """From the first streamed byte on, the provider is being paid: until the stream's last chunk says
    what it really cost, a cut (client gone, provider broke) settles at what was reserved, not at zero."""
    ctx.spent_tokens, ctx.spent_usd = ctx.reserved_tokens, ctx.reserved_usd


# After a response, an outage that committed nothing is retried this many times, these seconds apart
# (about 8 s in all: a restart or a failover, not a long outage); otherwise the reservation would hold the
# tenant's budget until it expires and the request's cost would never be recorded.
SETTLE_RETRY_S = (0.25, 0.5, 1.0, 2.0, 4.0)


def after_response(ctx: RequestContext) -> None:
    """Settle the reservation to what the request really used, then write its trace. Runs after the
    response has been sent (a background task); never raises: the caller already has its answer."""
    from stratus.errors import DatabaseUnavailable
    from stratus.gateway.pool import lease
    from stratus.gateway.traces import TraceRecord

    who = ctx.principal
    if who is None:
        return  # no tenant (401 or earlier): nothing to settle, nowhere to trace
    if ctx.after_rails is not None:
        _run_after_rails(ctx)

    def trace_record() -> Any:  # built once the records are written: latency_ms counts them
        code = ctx.status_code or 200
        fields = {"request_id": ctx.request_id, "tenant_id": who.tenant_id, "key_prefix": who.key_prefix,
                  "route": ctx.route, "method": ctx.method, "latency_ms": _latency_ms(ctx),
                  "status": "ok" if code < 400 else "error", "status_code": code, **ctx.trace}
        fields["timings_ms"] = {**fields.get("timings_ms", {}), **ctx.timings_ms}
        known = TraceRecord.model_fields
        return TraceRecord(**{k: v for k, v in fields.items() if k in known and v is not None})

    for pause in (*SETTLE_RETRY_S, None):
        try:
            with lease() as conn:
                # An outage here (the lease, or the writes together) committed nothing: worth a retry.
                together = ctx.admitted and _all_in_one(conn, ctx, who, trace_record)
                if not together:
                    _write_apart(conn, ctx, who, trace_record)
            _emit_metrics(ctx)
            return
        except DatabaseUnavailable:
            if pause is None:
                log.exception("request %s: the database stayed unavailable; the reservation expires unsettled",
                              ctx.request_id)
                return
            log.warning("request %s: the database is unavailable; settling again in %.2f s", ctx.request_id, pause)
            time.sleep(pause)
        except Exception:  # noqa: BLE001 - the response is sent; a failed settle expires with its reservation
            log.exception("request %s: settling or tracing failed", ctx.request_id)
            return


# The rails after the response need at least this long before the invocation's end (besides the margin the
# settle and the trace keep): on a first request the embedding model loads first.
AFTER_RAILS_MIN_S = 2.0
AFTER_RAILS_STEP = "guard_after_response"


def _latency_ms(ctx: RequestContext) -> float:
    """The request's latency as traced and measured: the after-response writes count, the rails run after the
    response do not (the caller never waits for them)."""
    return round(ctx.elapsed_ms() - ctx.timings_ms.get(AFTER_RAILS_STEP, 0.0), 3)


def _run_after_rails(ctx: RequestContext) -> None:
    """The rails left for after the response, their verdicts added to the trace's guard record. A failure,
    or too little of the invocation left, leaves them listed as deferred there (never computed) and costs
    nothing else."""
    from stratus.gateway.pool import lease
    from stratus.guard.rails import AFTER_RESPONSE_RAILS

    rails, ctx.after_rails = ctx.after_rails, None
    assert rails is not None
    if ctx.deadline_at is not None and ctx.deadline_at - time.time() < INVOCATION_MARGIN_S + AFTER_RAILS_MIN_S:
        log.warning("request %s: too little of the invocation left for the rails after the response",
                    ctx.request_id)
        return
    t = time.perf_counter()
    try:
        with lease() as conn:
            verdicts = rails(conn)
    except Exception:  # noqa: BLE001 - the answer is sent; the settle and the trace must still happen
        log.exception("request %s: the rails run after the response failed", ctx.request_id)
        return
    finally:
        ctx.step(AFTER_RAILS_STEP, t)
    guard = dict(ctx.trace.get("guard") or {})
    guard["verdicts"] = [*guard.get("verdicts", []), *(v.model_dump(mode="json") for v in verdicts)]
    # Every rail the runner knows has run (a rail with nothing left to read, or turned off since, gives no
    # verdict); one it does not know stays listed.
    guard["deferred"] = [r for r in guard.get("deferred", []) if r not in AFTER_RESPONSE_RAILS]
    ctx.trace["guard"] = guard


def _write_apart(conn: psycopg.Connection, ctx: RequestContext, who: Principal,
                 trace_record: Callable[[], TraceRecord]) -> None:
    """Each record, the settlement and the trace in transactions of their own: a record that cannot be
    stored never costs the settlement. Not retried (some of it may have committed)."""
    from stratus.errors import DatabaseUnavailable
    from stratus.gateway.admission import settle
    from stratus.gateway.traces import record_trace

    try:
        for write in ctx.deferred:  # the generation row and cache entry of an answer already sent
            try:
                write(conn)
            except Exception:  # noqa: BLE001 - a lost record must not cost the settle and the trace
                log.exception("request %s: a deferred write failed", ctx.request_id)
                conn.rollback()
        if ctx.admitted:
            settle(conn, who, request_id=ctx.reservation_id, tokens=ctx.spent_tokens, cost_usd=ctx.spent_usd)
        record_trace(trace_record(), conn)
    except DatabaseUnavailable as err:
        raise RuntimeError(f"the database went away while writing apart: {err}") from err


def _all_in_one(conn: psycopg.Connection, ctx: RequestContext, who: Principal,
                trace_record: Callable[[], TraceRecord]) -> bool:
    """The deferred records, the settlement and the trace row in one tenant transaction (its commit waits
    for the WAL flush, as the settlement needs): one transaction's round trips instead of one each.
    False, with nothing written, when any of it failed: the caller then writes them apart, as before, so
    a record or trace that cannot be stored never costs the settlement."""
    import psycopg

    from stratus.db import traces as trace_store
    from stratus.db.connection import is_unavailable, joined, tenant_transaction
    from stratus.errors import DatabaseUnavailable
    from stratus.gateway.admission import settle
    from stratus.gateway.traces import trace_row

    try:
        with tenant_transaction(who.tenant_id, conn), joined(conn, who.tenant_id):
            for write in ctx.deferred:
                write(conn)
            trace_store.insert_trace(conn, trace_row(trace_record()), relaxed=False)
            # Last: the settlement's row locks (the tenant's budget and windows, which every admission
            # takes) are held only until the commit.
            settle(conn, who, request_id=ctx.reservation_id, tokens=ctx.spent_tokens, cost_usd=ctx.spent_usd,
                   in_transaction=True)
    except Exception as err:  # noqa: BLE001 - redone apart, where each failure is handled as it always was
        if not conn.closed and not conn.broken:
            with suppress(psycopg.Error):
                conn.rollback()
        if isinstance(err, DatabaseUnavailable) or (isinstance(err, psycopg.Error) and is_unavailable(err)):
            raise DatabaseUnavailable("the database is unavailable") from err  # nothing committed: retried
        log.debug("request %s: the after-response writes together failed; writing them apart", ctx.request_id,
                  exc_info=True)
        return False
    return True


def _emit_metrics(ctx: RequestContext) -> None:
    """Spend and latency as CloudWatch metrics (EMF log lines) where the settings turn them on: the
    template's spend and latency alarms and its dashboard read them."""
    if not ctx.emit_metrics:
        return
    from stratus.evals.metrics import Metric, emit

    emit([Metric("SpendUsd", round(ctx.spent_usd, 8)), Metric("LatencyMs", _latency_ms(ctx), "Milliseconds")],
         service="gateway")


def finish_task(ctx: RequestContext) -> Any:
    """The response's background task (once per request); None when another response took it."""
    from starlette.background import BackgroundTask

    if ctx.finished or ctx.principal is None:
        return None
    ctx.finished = True
    return BackgroundTask(after_response, ctx)
