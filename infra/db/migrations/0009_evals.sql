-- Online evaluation (functions/eval_sampler): what a sampled request said, how it scored, and each run.
--
-- Which requests are sampled is a pure function of the request id (stratus.evals.sampling): the gateway
-- stores the content of exactly those requests, PII-redacted, after answering (eval_samples); the
-- scheduled sampler scores the samples that arrived since the last finished run. Scores are keyed by
-- (tenant, request, metric), so a run repeated after a crash rewrites the same rows and counts nothing
-- twice.

CREATE TABLE eval_samples (
  tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  request_id       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  mode             text NOT NULL CHECK (mode IN ('rag', 'chat')),
  model_alias      text,
  prompt_name      text,
  prompt_version   integer,
  question         text NOT NULL,  -- PII replaced by placeholders
  answer           text NOT NULL,  -- PII replaced by placeholders
  chunk_ids        bigint[] NOT NULL DEFAULT '{}',  -- the passages the answer was generated from
  cited_chunk_ids  bigint[] NOT NULL DEFAULT '{}',
  latency_ms       real NOT NULL DEFAULT 0,
  cost_usd         numeric(14, 10) NOT NULL DEFAULT 0,
  -- What was checked on the unredacted text before it was redacted (e.g. PII types in the answer as
  -- the caller saw it), and the guard's verdicts.
  facts            jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX eval_samples_time ON eval_samples (created_at);

CREATE TABLE eval_runs (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz,
  window_from    timestamptz NOT NULL,  -- samples created after this ...
  window_to      timestamptz NOT NULL,  -- ... and up to this
  -- partial: stopped at the function's deadline; the next run resumes the same window for the tenants
  -- not in tenants_done. A finished run (done or partial) has each listed tenant scored and aggregated.
  status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'partial', 'failed')),
  tenants_done   text[] NOT NULL DEFAULT '{}',
  summary        jsonb NOT NULL DEFAULT '{}'  -- counts, regressions, drift (no request content)
);
CREATE INDEX eval_runs_finished ON eval_runs (window_to DESC, id DESC) WHERE status IN ('done', 'partial');

CREATE TABLE eval_scores (
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  request_id      text NOT NULL,
  metric          text NOT NULL,  -- citations_retrieved, groundedness, judge_faithfulness, ...
  score           real,           -- 0..1; NULL when the scorer failed (a judge error is not a zero)
  passed          boolean,
  scorer          text NOT NULL,  -- "check" or the judge's prompt and version, e.g. "judge-faithfulness@1"
  error           text,
  details         jsonb NOT NULL DEFAULT '{}',
  run_id          bigint NOT NULL REFERENCES eval_runs (id),
  prompt_name     text,
  prompt_version  integer,
  scored_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, request_id, metric)
);
CREATE INDEX eval_scores_run ON eval_scores (run_id);

CREATE TABLE eval_aggregates (
  run_id          bigint NOT NULL REFERENCES eval_runs (id),
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  prompt_name     text NOT NULL,
  prompt_version  integer NOT NULL,
  metric          text NOT NULL,
  n               integer NOT NULL,
  mean            real,
  failures        integer NOT NULL DEFAULT 0,  -- scorer errors, not counted in the mean
  window_to       timestamptz NOT NULL,
  PRIMARY KEY (run_id, tenant_id, prompt_name, prompt_version, metric)
);
CREATE INDEX eval_aggregates_series ON eval_aggregates (tenant_id, prompt_name, metric, window_to);

-- Input drift per tenant and run: the figures and example questions (PII-redacted), so under RLS.
CREATE TABLE eval_drift (
  run_id     bigint NOT NULL REFERENCES eval_runs (id),
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  window_to  timestamptz NOT NULL,
  report     jsonb NOT NULL,
  PRIMARY KEY (run_id, tenant_id)
);
CREATE INDEX eval_drift_series ON eval_drift (tenant_id, window_to);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['eval_samples', 'eval_scores', 'eval_aggregates', 'eval_drift'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;

-- eval_runs holds no request content: the sampler's own bookkeeping (windows, counts, the ids of the
-- tenants a run completed, drift flags per tenant); examples and scores are in the tables above, under RLS.
GRANT SELECT, INSERT, UPDATE, DELETE ON eval_samples, eval_scores, eval_aggregates, eval_drift TO stratus_app;
GRANT SELECT, INSERT, UPDATE ON eval_runs TO stratus_app;
