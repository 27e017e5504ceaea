-- Prompt registry: published prompt versions (global, immutable) and labels (production, staging, ...)
-- that point at a version globally (tenant_id NULL) or for one tenant, with the history that rollback
-- walks back through.
--
-- Who writes what: publishing versions and moving global labels are operator actions (sync at cold
-- start, `stratus prompts ...`) done on a connection that keeps the login role, as migrations do. The
-- application role stratus_app reads versions and global labels and manages only its bound tenant's
-- labels. RLS is enabled but not forced on the label tables, so their owner (the login role) manages
-- the global rows, which no tenant may write.

CREATE TABLE prompt_versions (
  name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
  version       integer NOT NULL CHECK (version > 0),
  content       jsonb NOT NULL,       -- the canonical parsed content (stratus.prompts.models)
  content_hash  text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),  -- sha256 of its canonical JSON
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

-- Published versions never change: a change is a new version.
CREATE FUNCTION prompt_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'prompt % version % is published and immutable; publish a new version', OLD.name, OLD.version;
END
$$;
CREATE TRIGGER prompt_versions_immutable BEFORE UPDATE ON prompt_versions
  FOR EACH ROW EXECUTE FUNCTION prompt_versions_immutable();

CREATE TABLE prompt_labels (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   text REFERENCES tenants (id) ON DELETE CASCADE,  -- NULL: the global label
  name        text NOT NULL,
  label       text NOT NULL CHECK (label ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  version     integer NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (name, version) REFERENCES prompt_versions (name, version)
);
-- One global label and one per tenant (partial indexes: NULLS NOT DISTINCT needs PostgreSQL 15).
CREATE UNIQUE INDEX prompt_labels_global ON prompt_labels (name, label) WHERE tenant_id IS NULL;
CREATE UNIQUE INDEX prompt_labels_tenant ON prompt_labels (tenant_id, name, label) WHERE tenant_id IS NOT NULL;

-- Every move of a label. Rollback marks the latest live entry rolled back and points the label at the
-- live entry before it, so repeated rollbacks walk further back and the audit trail is never rewritten.
CREATE TABLE prompt_label_history (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id       text REFERENCES tenants (id) ON DELETE CASCADE,
  name            text NOT NULL,
  label           text NOT NULL,
  version         integer NOT NULL,
  action          text NOT NULL CHECK (action IN ('sync', 'promote')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  rolled_back_at  timestamptz,
  FOREIGN KEY (name, version) REFERENCES prompt_versions (name, version)
);
CREATE INDEX prompt_label_history_live ON prompt_label_history (name, label, tenant_id, id)
  WHERE rolled_back_at IS NULL;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['prompt_labels', 'prompt_label_history'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    -- Readable: global rows and the bound tenant's. Writable: only the bound tenant's.
    EXECUTE format(
      'CREATE POLICY tenant_read ON %I FOR SELECT '
      'USING (tenant_id IS NULL OR tenant_id = current_setting(''app.tenant_id'', true))', t);
    EXECUTE format(
      'CREATE POLICY tenant_insert ON %I FOR INSERT '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    EXECUTE format(
      'CREATE POLICY tenant_update ON %I FOR UPDATE '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    EXECUTE format(
      'CREATE POLICY tenant_delete ON %I FOR DELETE '
      'USING (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;

GRANT SELECT ON prompt_versions TO stratus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON prompt_labels, prompt_label_history TO stratus_app;
GRANT USAGE ON SEQUENCE prompt_labels_id_seq, prompt_label_history_id_seq TO stratus_app;
