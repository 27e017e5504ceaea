"""Soak and chaos: mixed traffic from several tenants against the local stack while faults are injected.

    python -m bench.soak --minutes 10        (make soak; figures in bench/results/soak.json)

Loopback only, bounded in time. One process runs the local stack (embedded PostgreSQL, moto, the SQS poller
running the ingest handler in process, the gateway on uvicorn) in hosted-provider mode: its one alias
`fast` (and `rag/fast`) routes to a loopback OpenAI upstream (tests.support.upstreams.OpenAIUpstream).
Client threads, one set per tenant, send plain chat, RAG, streamed chat, document uploads (presigned PUT
through the documents API) and deletes. Three tenants: two with generous limits, and one ("tight") with a
small requests-per-minute limit and a small daily budget, so that both refusals are exercised.

Faults, on a schedule spread over the run (each kind at least once):
  provider_429 / provider_5xx / provider_timeout / stream_cut  the upstream's Fault queue
  db_restart (twice)  the embedded PostgreSQL stopped and started again on the same data folder
  poison / duplicate  bad messages, and copies of real S3 events, sent to the ingest queue
  ingest_kill         the ingest handler does part of one batch (its first record), then raises: as a
                      worker killed mid-batch, Lambda's SQS poller retries the whole batch
Provider and database faults open a *fault window*: from injection until the faults are consumed (or the
database is back) and an uncounted probe chat is answered 200 again (so a circuit breaker the fault opened
has closed), plus a grace period; queue faults touch no request path. recovery_s records how long that took.

Counted at the end (each should be 0): documents lost or half-visible (every upload answered 2xx is, once
the queue drained, either ready with all of its active version's chunks, the object in S3 with the same
etag, and found by a lexical search for its marker; or deleted from S3 and the database), 5xx other than
503 inside fault windows, any 5xx outside them, budget overspend, requests admitted beyond the
requests-per-minute limit in a UTC minute window (from client timings: a request whose send and answer
straddle a minute boundary is placed in whichever window has room), admission reservations left
unsettled. Also: p50/p99 latency per request kind outside fault windows, and counts per kind and status.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import random
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, record, summary_ms
from stratus.lexical_analysis import TS_CONFIG

log = logging.getLogger("bench.soak")
ALIAS = "fast"
RETRY_DELAY_S = 15  # an ingest batch that failed is received again this much later
TIGHT_RPM = 40
TIGHT_BUDGET_USD = 0.02
PROVIDER_TIMEOUT_S = 2.0
GRACE_S = 4.0  # a fault window stays open this long after the fault is over (retries, reconnects)
KINDS = ("chat", "rag", "stream", "upload", "delete")
PROVIDER_FAULTS = {"provider_429", "provider_5xx", "provider_timeout", "stream_cut"}
PROVIDER_ERRORS = {(502, "all_deployments_failed"), (503, "circuit_open"), (504, "timeout")}
WORDS = ("latency budget window tenant ingest chunk vector lexical router fallback retry circuit cache "
         "prompt registry guard rail citation document version embedding queue bucket presigned").split()


# --- the run's record ------------------------------------------------------------------------------------
@dataclass
class Sample:
    kind: str
    tenant: str
    status: int  # HTTP status; 0 = transport error (no answer)
    code: str  # the error body's code, "stream_error" for an error event inside a 200 stream, else ""
    start: float  # time.time() at send
    end: float
    rid: str = ""  # the gateway's x-request-id


@dataclass
class Doc:
    tenant: str
    filename: str
    marker: str
    uploaded: bool = False
    deleted: str = ""  # "" | "yes" (delete answered 2xx) | "maybe" (delete answered otherwise)
    doc_id: str | None = None


@dataclass
class Record:
    samples: list[Sample] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)  # {"kind", "start", "end"}
    faults: collections.Counter = field(default_factory=collections.Counter)
    recovery_s: dict[str, list[float | None]] = field(default_factory=dict)  # fault -> injection to a 200 again
    docs: list[Doc] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    mine: threading.local = field(default_factory=threading.local)  # .last: this thread's last sample

    def add(self, s: Sample) -> None:
        self.mine.last = s
        with self.lock:
            self.samples.append(s)

    def in_window(self, s: Sample) -> bool:
        return any(w["start"] <= s.end and s.start <= w["end"] for w in self.windows)


# --- the stack -------------------------------------------------------------------------------------------
class Soak:
    def __init__(self, seconds: float, work: Path, seed: int = 7, tight_rpm: int = TIGHT_RPM) -> None:
        self.seconds = seconds
        self.tight_rpm = tight_rpm
        self.work = work
        self.rng = random.Random(seed)
        self.rec = Record()
        self.stop = threading.Event()
        self.tenants: dict[str, dict[str, Any]] = {}
        self.kill_next_batch = threading.Event()
        self.kills_done = 0

    # set-up
    def __enter__(self) -> Soak:
        from stratus.config import get_settings
        from stratus_tools.local.stack import EnvOverlay, LocalStack
        from tests.support.upstreams import OpenAIUpstream

        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.upstream = OpenAIUpstream(latency_s=0.02).start()
        catalog = {"default_alias": ALIAS,
                   "deployments": {"loop-openai": {"provider": "openai", "model": "gpt-loop",
                                                   "base_url": self.upstream.base_url, "timeout_s": PROVIDER_TIMEOUT_S,
                                                   "max_output_tokens": 500, "price": {"input": 2.0, "output": 8.0}}},
                   "aliases": {ALIAS: ["loop-openai"]}}
        (self.work / "models.yaml").write_text(json.dumps(catalog))
        self.env = EnvOverlay()
        self.env.set({"STRATUS_DATA_DIR": str(self.work / "data"),
                      "STRATUS_MODELS_FILE": str(self.work / "models.yaml"),
                      "STRATUS_OPENAI_API_KEY": "sk-loopback", "STRATUS_PROVIDER_MODE": "hosted",
                      "STRATUS_LOG_LEVEL": "ERROR", "DATABASE_URL": None})
        # A failed batch is received again after RETRY_DELAY_S, at most three times (the template's
        # maxReceiveCount), then dead-lettered: the three receives must span more than a database restart takes
        # on a loaded machine, or a document in flight during one is dead-lettered (on AWS they span an hour:
        # visibility 1800 s).
        self.stack = LocalStack(get_settings(), serve_gateway=True, retry_delay_s=RETRY_DELAY_S)
        try:
            self.stack.__enter__()
            self.url = str(self.stack.gateway_url)
            self._wrap_ingest()
            self._tenants()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            if getattr(self, "stack", None) is not None:
                self.stack.__exit__(None, None, None)
        finally:
            self.env.restore()
            self.upstream.stop()
            shutil.rmtree(self.work, ignore_errors=True)

    def _wrap_ingest(self) -> None:
        """The ingest handler, wrapped so that one armed batch is 'killed' after its first record."""
        assert self.stack.resources is not None
        fn = next(f for f in self.stack.resources.functions.values() if f.logical_id == "IngestFunction")
        real = fn.load()

        def handler(event: dict[str, Any], context: Any) -> Any:
            if self.kill_next_batch.is_set() and event.get("Records"):
                self.kill_next_batch.clear()
                self.kills_done += 1
                real({"Records": event["Records"][:1]}, context)  # work done, never acknowledged
                raise RuntimeError(f"soak: ingest worker killed mid-batch ({len(event['Records'])} records)")
            return real(event, context)

        fn._fn = handler

    def _tenants(self) -> None:
        from stratus.db.connection import connect
        from stratus.gateway import tenancy
        from stratus.gateway.keys import create_key
        from stratus.guard.policy import DEFAULTS, set_policy

        tag = uuid.uuid4().hex[:6]
        plan = (("alpha", 100_000, None), ("beta", 100_000, None), ("tight", self.tight_rpm, TIGHT_BUDGET_USD))
        for name, rpm, budget in plan:
            tenant = f"soak-{name}-{tag}"
            with connect(self.stack.database_url) as conn:
                tenancy.create_tenant(conn, tenant, f"soak {name}")
                tenancy.set_limits(conn, tenant, requests_per_minute=rpm, tokens_per_minute=100_000_000,
                                   budget_usd=budget, budget_period="day")
                key, _ = create_key(conn, tenant, name="soak", scopes=("inference", "documents"))
                conn.commit()
                if name != "alpha":  # alpha keeps the default guard rails; the others run without
                    set_policy(conn, tenant, {rail: {"action": "off"} for rail in DEFAULTS})
            self.tenants[name] = {"id": tenant, "key": key, "rpm": rpm, "budget": budget}

    # --- traffic -----------------------------------------------------------------------------------------
    def _client(self) -> Any:
        import httpx2

        return httpx2.Client(base_url=self.url, timeout=30)

    def _chat(self, client: Any, name: str, kind: str) -> None:
        t = self.tenants[name]
        model = f"rag/{ALIAS}" if kind == "rag" else ALIAS
        words = " ".join(self.rng.choice(WORDS) for _ in range(6))
        body = {"model": model, "max_tokens": 32, "stratus": {"cache": False},
                "messages": [{"role": "user", "content": f"What about {words}?"}]}
        if kind == "stream":
            body.update(stream=True, stream_options={"include_usage": True})
        headers = {"authorization": f"Bearer {t['key']}"}
        start = time.time()
        status, code, rid = 0, "", ""
        try:
            if kind == "stream":
                with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                    status, rid = r.status_code, r.headers.get("x-request-id", "")
                    text = "".join(r.iter_text())
                if status == 200:
                    events = [e for e in text.strip().split("\n\n") if e.startswith("data: ")]
                    last = events[-1] if events else ""
                    if last.startswith('data: {"error"'):  # a cut answer, said so: error event, no [DONE]
                        code = "stream_error: " + last[6:200]
                    elif last != "data: [DONE]" or any(e.startswith('data: {"error"') for e in events):
                        code = "stream_incomplete: ..." + text.rstrip()[-160:].replace("\n", " ")
                else:
                    code = _code(text)
            else:
                r = client.post("/v1/chat/completions", json=body, headers=headers)
                status, code = r.status_code, "" if r.status_code == 200 else _code(r.text)
                rid = r.headers.get("x-request-id", "")
        except Exception as err:  # transport: no answer at all
            code = type(err).__name__
        self.rec.add(Sample(kind, name, status, code, start, time.time(), rid))

    def _upload(self, client: Any, name: str, filename: str | None = None) -> Doc:
        import httpx2

        t = self.tenants[name]
        marker = "zq" + uuid.uuid4().hex[:10]
        doc = Doc(name, filename or f"soak/{marker}.md", marker)
        paras = [" ".join(self.rng.choice(WORDS) for _ in range(60)) for _ in range(self.rng.randint(2, 6))]
        text = f"# Note {marker}\n\nThe marker is {marker}.\n\n" + "\n\n".join(paras) + "\n"
        start = time.time()
        status, code = 0, ""
        try:
            r = client.post("/v1/documents", json={"filename": doc.filename},
                            headers={"authorization": f"Bearer {t['key']}"})
            status = r.status_code
            if status == 201:
                up = r.json()
                put = httpx2.put(up["upload_url"], content=text.encode(), headers=up["headers"], timeout=30)
                status = put.status_code
                code = "" if put.is_success else f"put_{put.status_code}"
                doc.uploaded = put.is_success
            else:
                code = _code(r.text)
        except Exception as err:
            code = type(err).__name__
        self.rec.add(Sample("upload", name, status, code, start, time.time()))
        with self.rec.lock:
            self.rec.docs.append(doc)
        return doc

    def _delete(self, client: Any, name: str) -> None:
        t = self.tenants[name]
        headers = {"authorization": f"Bearer {t['key']}"}
        start = time.time()
        status, code = 0, ""
        try:
            r = client.get("/v1/documents", params={"status": "ready", "limit": 100}, headers=headers)
            status = r.status_code
            if status != 200:
                code = _code(r.text)
            else:
                with self.rec.lock:
                    mine = {d.filename: d for d in self.rec.docs if d.tenant == name and d.uploaded and not d.deleted
                            and not d.filename.startswith("seed/")}
                ready = [row for row in r.json()["data"] if row["key"] in mine]
                if not ready:
                    return
                row = self.rng.choice(ready)
                doc = mine[row["key"]]
                doc.deleted = "maybe"
                r = client.delete(f"/v1/documents/{row['id']}", headers=headers)
                status = r.status_code
                if r.is_success:
                    doc.deleted = "yes"
                else:
                    code = _code(r.text)
        except Exception as err:
            code = type(err).__name__
        self.rec.add(Sample("delete", name, status, code, start, time.time()))

    def _worker(self, name: str, weights: dict[str, float], pause_s: float) -> None:
        kinds, w = list(weights), list(weights.values())
        with self._client() as client:
            while not self.stop.is_set():
                kind = self.rng.choices(kinds, w)[0]
                if kind == "upload":
                    self._upload(client, name)
                elif kind == "delete":
                    self._delete(client, name)
                else:
                    self._chat(client, name, kind)
                last = getattr(self.rec.mine, "last", None)
                # a refusal or an outage: back off a little, as a client honouring retry-after would
                backoff = 0.25 if last is not None and last.status in (429, 503) else 0
                self.stop.wait(pause_s + backoff)

    # --- faults ------------------------------------------------------------------------------------------
    def _window(self, kind: str, start: float, end: float) -> None:
        with self.rec.lock:
            # "until": the fault itself (up to recovery); "end" adds the grace period
            self.rec.windows.append({"kind": kind, "start": start, "until": end, "end": end + GRACE_S})
            self.rec.faults[kind] += 1

    def _provider_fault(self, kind: str) -> None:
        from tests.support.upstreams import Fault

        faults = {
            "provider_429": [Fault.status(429, retry_after=0.2) for _ in range(4)],
            "provider_5xx": [Fault.status(self.rng.choice((500, 502, 503))) for _ in range(4)],
            "provider_timeout": [Fault.delay(PROVIDER_TIMEOUT_S + 1.5) for _ in range(2)],
            "stream_cut": [Fault.cut_stream(after_chunks=2) for _ in range(6)],  # any request may take one
        }[kind]
        start = time.time()
        self.upstream.inject(*faults)
        while self.upstream.pending_faults and not self.stop.is_set():  # consumed (an open circuit delays it)
            time.sleep(0.1)
        recovered = self._recovered(deadline_s=60)
        # a delayed answer still runs into its timeout after the fault was taken
        self._window(kind, start, time.time() + (PROVIDER_TIMEOUT_S if kind == "provider_timeout" else 0))
        with self.rec.lock:
            self.rec.recovery_s.setdefault(kind, []).append(round(time.time() - start, 1) if recovered else None)

    def _recovered(self, deadline_s: float) -> bool:
        """Probe with a plain chat (not counted) until the gateway answers 200 again: a fault window lasts until
        the deployment's circuit breaker, if the fault opened it, has closed again."""
        import httpx2

        body = {"model": ALIAS, "max_tokens": 8, "messages": [{"role": "user", "content": "probe"}]}
        headers = {"authorization": f"Bearer {self.tenants['beta']['key']}"}
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and not self.stop.is_set():
            try:
                r = httpx2.post(self.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
                if r.status_code == 200:
                    return True
            except httpx2.HTTPError:
                pass
            time.sleep(0.5)
        return False

    def _db_restart(self) -> None:
        from stratus_tools.local.postgres import start_embedded

        pg = self.stack._pg
        start = time.time()
        url = pg.url
        pg.stop()
        time.sleep(1.5)
        new = start_embedded(pg.pgdata)
        if new.url != url:
            raise RuntimeError(f"the restarted PostgreSQL has another URL: {new.url} (was {url})")
        new.watch()
        self.stack._pg = new
        recovered = self._recovered(deadline_s=60)
        self._window("db_restart", start, time.time())
        with self.rec.lock:
            took = round(time.time() - start, 1) if recovered else None
            self.rec.recovery_s.setdefault("db_restart", []).append(took)

    def _queue_faults(self, kind: str) -> None:
        sqs = self.stack.client("sqs")
        queue = self.stack.resources.resolver.attributes["IngestQueue"]["QueueUrl"]
        bucket = self.stack.documents_bucket
        bodies: list[str] = []
        if kind == "poison":
            ghost = f"tenants/{self.tenants['beta']['id']}/soak/ghost-{uuid.uuid4().hex[:8]}.md"
            bodies = ["this is not json", json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {}}]}),
                      json.dumps({"Records": "nope"}), _s3_event(bucket, ghost, "ObjectCreated:Put", 10, "0" * 32),
                      _s3_event(bucket, "not-a-tenant/x.md", "ObjectCreated:Put", 10, "0" * 32)]
        else:  # duplicates of real events: a created object, and a removed one
            s3 = self.stack.client("s3")
            with self.rec.lock:
                live = [d for d in self.rec.docs if d.uploaded and not d.deleted]
                gone = [d for d in self.rec.docs if d.deleted == "yes"]
            for d in self.rng.sample(live, min(2, len(live))):
                key = f"tenants/{self.tenants[d.tenant]['id']}/{d.filename}"
                try:
                    head = s3.head_object(Bucket=bucket, Key=key)
                except Exception:  # deleted meanwhile
                    continue
                body = _s3_event(bucket, key, "ObjectCreated:Put", head["ContentLength"], head["ETag"].strip('"'))
                bodies += [body, body]
            for d in gone[:1]:
                key = f"tenants/{self.tenants[d.tenant]['id']}/{d.filename}"
                bodies.append(_s3_event(bucket, key, "ObjectRemoved:Delete", 0, ""))
        for body in bodies:
            sqs.send_message(QueueUrl=queue, MessageBody=body)
        with self.rec.lock:
            self.rec.faults[kind] += 1
            self.rec.faults[f"{kind}_messages"] += len(bodies)

    def _ingest_kill(self) -> None:
        client = self._client()
        with client:
            self.kill_next_batch.set()
            for _ in range(3):  # a batch of several records to kill in the middle of
                self._upload(client, self.rng.choice(("alpha", "beta")))
        deadline = time.monotonic() + 30
        while self.kill_next_batch.is_set() and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.1)
        with self.rec.lock:
            self.rec.faults["ingest_kill"] += 1

    def schedule(self) -> list[tuple[float, str]]:
        """Fault kinds at fractions of the run: every kind once, the database restarted twice, and on a long
        run the provider faults repeated every ~90 s."""
        base = ["provider_429", "db_restart", "poison", "provider_5xx", "ingest_kill", "provider_timeout",
                "duplicate", "stream_cut", "db_restart"]
        extra = max(0, int(self.seconds // 90) - 1)
        kinds = base + [k for _ in range(extra) for k in ("provider_429", "provider_5xx", "provider_timeout",
                                                            "stream_cut", "poison", "duplicate")]
        span = self.seconds * 0.8
        return [(self.seconds * 0.1 + span * i / len(kinds), k) for i, k in enumerate(kinds)]

    def _chaos(self, t0: float) -> None:
        for at, kind in self.schedule():
            if self.stop.wait(max(0.0, t0 + at - time.monotonic())):
                return
            log.info("fault %s at %.0f s", kind, time.monotonic() - t0)
            try:
                if kind.startswith(("provider", "stream")):
                    self._provider_fault(kind)
                elif kind == "db_restart":
                    self._db_restart()
                elif kind in ("poison", "duplicate"):
                    self._queue_faults(kind)
                elif kind == "ingest_kill":
                    self._ingest_kill()
            except Exception:
                log.exception("fault %s could not be injected", kind)
                with self.rec.lock:
                    self.rec.faults[f"{kind}_injection_failed"] += 1

    # --- the run -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with self._client() as client:  # seed documents for RAG, and warm every path once
            for name in self.tenants:
                doc = self._upload(client, name, filename=f"seed/{name}.md")
                assert doc.uploaded, "the seed upload failed"
            self.stack.wait_for_ingestion(120)
            for name in self.tenants:
                for kind in ("chat", "rag", "stream"):
                    self._chat(client, name, kind)
        self.rec.samples.clear()
        mix = {"chat": 4, "rag": 2, "stream": 3, "upload": 1.2, "delete": 0.8}
        threads = [threading.Thread(target=self._worker, args=(n, mix, 0.05), name=f"soak-{n}-{i}", daemon=True)
                   for n in ("alpha", "beta") for i in range(2)]
        threads.append(threading.Thread(target=self._worker, name="soak-tight",
                                        args=("tight", {"chat": 5, "stream": 2, "rag": 1}, 0.0), daemon=True))
        t0 = time.monotonic()
        started = time.time()
        for t in threads:
            t.start()
        chaos = threading.Thread(target=self._chaos, args=(t0,), name="soak-chaos", daemon=True)
        chaos.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads:
            t.join(60)
        chaos.join(60)
        self.upstream.clear()  # faults left over (none unless a fault outlived the run) are dropped
        drained = self.stack.wait_for_ingestion(180)
        time.sleep(1.0)
        return self.summarise(time.time() - started, drained)

    # --- the figures -------------------------------------------------------------------------------------
    def _provider_answer(self, s: Any) -> bool:
        """A provider fault that outlasted the only deployment's retries is answered with the gateway's typed
        provider error (502 all_deployments_failed, 503 circuit_open, 504 timeout), as OpenAI's SDKs expect
        and retry; that is the honest status while only the provider is down. During a database outage
        the only acceptable 5xx is 503; the grace period after the database is back does not count as the
        outage (a provider fault injected then answers as a provider fault)."""
        windows = set(self.windows_of(s))
        return ((s.status, s.code.split(":")[0]) in PROVIDER_ERRORS and bool(PROVIDER_FAULTS & windows)
                and "db_restart" not in self.windows_of(s, grace=False))

    def summarise(self, wall_s: float, drained: bool) -> dict[str, Any]:
        rec = self.rec
        statuses: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
        codes: collections.Counter = collections.Counter()
        bad_in, bad_out = [], []
        stream_errors_in = provider_errors_in = 0
        latency: dict[str, list[float]] = collections.defaultdict(list)
        for s in rec.samples:
            statuses[s.kind][str(s.status)] += 1
            if s.code:
                codes[f"{s.kind} {s.status} {s.code.split(':')[0]}"] += 1
            inside = rec.in_window(s)
            if inside and s.code.startswith("stream_error"):
                stream_errors_in += 1  # a provider cut passed on as the protocol says: not a failure
            elif s.status >= 500 or s.status == 0 or s.code.startswith("stream_"):
                if not inside:
                    bad_out.append(s)
                elif self._provider_answer(s):
                    provider_errors_in += 1  # the provider failed past retries: its typed 502/504, not ours
                elif s.status != 503:
                    bad_in.append(s)
            if not inside and s.status in (200, 201, 202) and not s.code:
                latency[s.kind].append(s.end - s.start)
        db = self._database_checks()
        docs = self._document_checks()
        over = _over_admission([s for s in rec.samples if s.tenant == "tight"], self.tight_rpm)
        zero = {
            "documents_lost": docs["lost"], "documents_half_visible": docs["half_visible"],
            "non_503_5xx_in_fault_windows": len(bad_in), "5xx_outside_fault_windows": len(bad_out),
            "budget_overspend_usd": db["overspend_usd"], "rate_limit_over_admission": over["over"],
            "stuck_reservations": db["reservations"],
        }
        return {
            "duration_s": round(wall_s, 1), "ingest_queue_drained": drained, "counts_that_must_be_zero": zero,
            "ok": all(v == 0 for v in zero.values()) and drained,
            "requests": len(rec.samples), "statuses": {k: dict(v) for k, v in statuses.items()},
            "error_codes": dict(codes.most_common()),
            "latency_outside_fault_windows": {k: summary_ms(v) for k, v in latency.items() if v},
            "stream_error_events_in_fault_windows": stream_errors_in,
            "provider_errors_in_provider_fault_windows": provider_errors_in,
            "faults": dict(rec.faults), "ingest_kills_done": self.kills_done, "recovery_s": rec.recovery_s,
            "fault_windows_s": round(sum(w["end"] - w["start"] for w in rec.windows), 1),
            "windows": [{"kind": w["kind"], "at_s": round(w["start"] - (rec.samples[0].start if rec.samples else 0), 1),
                         "length_s": round(w["end"] - w["start"], 1)} for w in rec.windows],
            "bad_requests": [vars(s) | {"windows": self.windows_of(s)} for s in (bad_in + bad_out)[:100]],
            "documents": docs, "budget": db, "rate_limit": over,
            "tenants": {n: {"rpm": t["rpm"], "budget_usd": t["budget"]} for n, t in self.tenants.items()},
        }

    def windows_of(self, s: Sample, *, grace: bool = True) -> list[str]:
        """The kinds of fault window the request overlapped (`grace=False`: the faults themselves)."""
        key = "end" if grace else "until"
        return sorted({w["kind"] for w in self.rec.windows if w["start"] <= s.end and s.start <= w[key]})

    def _owner(self) -> Any:
        import psycopg

        return psycopg.connect(self.stack.database_url, autocommit=True)

    def _database_checks(self) -> dict[str, Any]:
        with self._owner() as conn:
            # (the reservation's id is the gateway's own, not the request's x-request-id: attributed by time)
            rows = conn.execute(
                "SELECT r.tenant_id, r.request_id, extract(epoch FROM r.created_at), "
                "extract(epoch FROM r.expires_at - r.created_at), r.amount_usd FROM budget_reservations r").fetchall()
            names = {t["id"]: n for n, t in self.tenants.items()}
            t0 = self.rec.samples[0].start if self.rec.samples else 0.0
            stuck = [{"tenant": names.get(r[0], r[0]), "reservation_id": r[1], "ttl_s": float(r[3]),
                      "reserved_usd": float(r[4]),
                      "at_s": round(float(r[2]) - t0, 1),
                      # the windows its request may have overlapped: admitted at most 30 s (the clients'
                      # timeout) before a window began, or inside it
                      "during": sorted({w["kind"] for w in self.rec.windows
                                        if w["start"] - 30 <= float(r[2]) <= w["end"]})}
                     for r in rows]
            out: dict[str, Any] = {"reservations": len(rows), "stuck": stuck[:30], "overspend_usd": 0.0, "tenants": {}}
            for name, t in self.tenants.items():
                spent = conn.execute("SELECT coalesce(sum(spent_usd), 0) FROM budget_usage WHERE tenant_id = %s",
                                     (t["id"],)).fetchone()[0]
                traced = conn.execute("SELECT coalesce(sum(cost_usd), 0), count(*) FROM traces WHERE tenant_id = %s",
                                      (t["id"],)).fetchone()
                row = {"spent_usd": float(spent), "traced_cost_usd": float(traced[0]), "traces": traced[1],
                       "budget_usd": t["budget"]}
                if t["budget"] is not None:
                    over = max(0.0, float(spent) - t["budget"])
                    row["overspend_usd"] = over
                    out["overspend_usd"] = round(out["overspend_usd"] + over, 6)
                out["tenants"][name] = row
        return out

    def _document_checks(self) -> dict[str, Any]:
        s3 = self.stack.client("s3")
        bucket = self.stack.documents_bucket
        objects: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tenants/"):
            for o in page.get("Contents", []):
                objects[o["Key"]] = o["ETag"].strip('"')
        lost, half, problems = 0, 0, []
        tally = collections.Counter()
        with self._owner() as conn:
            for d in self.rec.docs:
                if not d.uploaded:
                    continue
                tid = self.tenants[d.tenant]["id"]
                key = f"tenants/{tid}/{d.filename}"
                row = conn.execute("SELECT id, status, version, chunk_count, etag FROM documents "
                                   "WHERE tenant_id = %s AND source_key = %s", (tid, d.filename)).fetchone()
                chunks = conn.execute(
                    "SELECT count(*) FILTER (WHERE c.document_version = d.version), "
                    "count(*) FILTER (WHERE c.document_version <> d.version), "
                    "count(DISTINCT c.ordinal) FILTER (WHERE c.document_version = d.version), "
                    "count(*) FILTER (WHERE c.document_version = d.version "
                    "                 AND c.lexemes @@ plainto_tsquery(%s::regconfig, %s)) "
                    "FROM chunks c JOIN documents d ON d.id = c.document_id "
                    "WHERE d.tenant_id = %s AND d.source_key = %s", (TS_CONFIG, d.marker, tid, d.filename)).fetchone()
                active, stale, ordinals, found = (int(x) for x in chunks)
                in_s3 = key in objects
                gone_db = row is None or (row[1] == "deleted" and active == 0)
                if d.deleted and not in_s3 and gone_db and stale == 0:
                    tally["deleted"] += 1
                    continue
                complete = (row is not None and row[1] == "ready" and row[3] > 0 and active == row[3] == ordinals
                            and stale == 0 and found > 0 and in_s3 and objects[key] == (row[4] or "").strip('"'))
                if complete and d.deleted != "yes":
                    tally["ready"] += 1
                    continue
                what = {"doc": d.filename, "tenant": d.tenant, "deleted": d.deleted, "in_s3": in_s3,
                        "row": list(map(str, row)) if row else None, "active_chunks": active, "stale_chunks": stale,
                        "marker_found": found}
                problems.append(what)
                if row is None or (in_s3 and row[1] != "ready" and active == 0 and not d.deleted):
                    lost += 1
                else:
                    half += 1
        dlq = self.stack.resources.resolver.resolve({"Ref": "IngestDeadLetterQueue"})
        dead = self.stack.client("sqs").get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        return {"uploaded": sum(d.uploaded for d in self.rec.docs), "ready": tally["ready"],
                "deleted": tally["deleted"], "lost": lost, "half_visible": half, "problems": problems[:20],
                "objects_in_s3": len(objects), "dead_lettered": int(dead)}  # the poison messages included


def _code(text: str) -> str:
    try:
        return str(json.loads(text)["error"].get("code") or json.loads(text)["error"].get("type") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "unparsed"


def _s3_event(bucket: str, key: str, name: str, size: int, etag: str) -> str:
    from urllib.parse import quote_plus

    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size,
                           "sequencer": hashlib.sha1(key.encode()).hexdigest()[:16].upper()}
    if etag:
        obj["eTag"] = etag
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ingest",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj}}]})


def _refused(s: Sample) -> bool:
    """The gateway's own 429 (a rate limit or budget), not a provider's passed on."""
    return s.status == 429 and not s.code.startswith("provider_rate_limited")


def _over_admission(samples: list[Sample], limit: int) -> dict[str, Any]:
    """Admitted requests per UTC minute window against `limit`. Admitted: any answer but the gateway's own
    429 or a 503 (a database outage refuses before admission, or fails it); a provider's rate limit passed on
    (429 provider_rate_limited) was admitted. A request is placed in the window of its send and answer times,
    a straddler in the earlier window with room, else the later one."""
    admitted = sorted((s for s in samples if s.status not in (0, 503) and not _refused(s)), key=lambda s: s.start)
    counts: collections.Counter = collections.Counter()
    straddlers = []
    for s in admitted:
        a, b = int(s.start // 60), int(s.end // 60)
        if a == b:
            counts[a] += 1
        else:
            straddlers.append((a, b))
    for a, b in straddlers:
        counts[a if counts[a] < limit else b] += 1
    over = sum(max(0, c - limit) for c in counts.values())
    refused = sum(1 for s in samples if _refused(s))
    return {"limit_rpm": limit, "windows": {str(k): v for k, v in sorted(counts.items())}, "over": over,
            "refused_429": refused}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=None, help="overrides --minutes")
    parser.add_argument("--out", default="soak", help="results name under bench/results ('' records nothing)")
    parser.add_argument("--json", default=None, help="also write the whole result to this file")
    parser.add_argument("--tight-rpm", type=int, default=TIGHT_RPM,
                        help="the tight tenant's requests per minute (a short run on a slow machine needs fewer)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    with Soak(seconds, ROOT / ".stratus" / f"soak-{uuid.uuid4().hex[:8]}", tight_rpm=args.tight_rpm) as soak:
        result = soak.run()
    if args.out:
        record(args.out, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({"ok": result["ok"], **result["counts_that_must_be_zero"], "requests": result["requests"],
                      "statuses": result["statuses"]}, indent=1))
    return result


if __name__ == "__main__":
    main()
