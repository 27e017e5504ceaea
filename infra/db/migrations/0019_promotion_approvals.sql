-- Two-key promotion (docs/audit.md#approvals). A tenant may protect labels of its own prompts (e.g.
-- `prod`): moving one is then requested by one admin key, with the eval gate's result attached, and
-- carried out only when a different admin key approves. Requests are decided once and never deleted by
-- the application role; each step is also an audit_log row.

CREATE TABLE approval_settings (
  tenant_id         text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  protected_labels  text[] NOT NULL DEFAULT '{}',
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE promotion_requests (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name          text NOT NULL,
  version       integer NOT NULL,
  label         text NOT NULL,
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
  requested_by  text NOT NULL,        -- the requesting key's id
  requested_at  timestamptz NOT NULL DEFAULT now(),
  eval_gate     jsonb NOT NULL,       -- the gate's result as the requester ran it
  decided_by    text,
  decided_at    timestamptz,
  reason        text,
  FOREIGN KEY (name, version) REFERENCES prompt_versions (name, version),
  CHECK ((status = 'pending') = (decided_by IS NULL)),
  CHECK (decided_by IS NULL OR decided_by <> requested_by)  -- the same key never approves its own request
);
CREATE INDEX promotion_requests_pending ON promotion_requests (tenant_id, requested_at) WHERE status = 'pending';

ALTER TABLE approval_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON approval_settings
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE promotion_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE promotion_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON promotion_requests
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON approval_settings TO stratus_app;
GRANT SELECT, INSERT, UPDATE ON promotion_requests TO stratus_app;
