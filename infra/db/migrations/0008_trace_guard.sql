-- The guard rails' verdicts of a request (stratus.guard.state.GuardSummary): which rails ran, what each
-- did (pass, flag, redact, block, drop, fence), with scores and thresholds. NULL: no rail ran (routes
-- other than chat). Never holds the caller's PII: placeholders' values stay in the request.
ALTER TABLE traces ADD COLUMN guard jsonb;
-- Requests a rail refused, for the report and for operators looking for attacks.
CREATE INDEX traces_guard_blocked ON traces (tenant_id, created_at DESC) WHERE guard->'blocked' IS NOT NULL
  AND guard->'blocked' <> 'null'::jsonb;
