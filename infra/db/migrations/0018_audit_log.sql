-- Audit trail of administrative changes (docs/audit.md). One hash chain per tenant (`chain` = the tenant
-- acted on; '*' for operator changes to global state, such as publishing prompts): each row carries the
-- sha256 of the previous row of its chain and its own, over a canonical JSON of its columns, so an edited,
-- deleted or reordered row breaks the chain that `stratus audit verify` walks.
--
-- Append-only for the application role: it may INSERT and SELECT its bound tenant's rows, never UPDATE,
-- DELETE or TRUNCATE. RLS is enabled but not forced, so the owner (operator CLI) reads every chain and
-- writes the global one. No foreign key to tenants: the record outlives what it records.

CREATE TABLE audit_log (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain         text NOT NULL,
  seq           bigint NOT NULL CHECK (seq > 0),
  at            timestamptz NOT NULL,
  action        text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  target        text NOT NULL,
  actor_key_id  text,                  -- NULL: an operator command (actor_tenant names the login)
  actor_tenant  text,
  actor_scopes  text[] NOT NULL,
  request_id    text,
  source_ip     text,
  before        jsonb,
  after         jsonb,
  prev_hash     text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
  row_hash      text NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$'),
  UNIQUE (chain, seq)                  -- a fork (two rows after one) cannot commit
);
CREATE INDEX audit_log_chain_at ON audit_log (chain, at);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
  USING (chain = current_setting('app.tenant_id', true))
  WITH CHECK (chain = current_setting('app.tenant_id', true));

REVOKE ALL ON audit_log FROM stratus_app;
GRANT SELECT, INSERT ON audit_log TO stratus_app;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO stratus_app;
