-- Responses API state (POST /v1/responses with `store`, the default): each stored response keeps the
-- conversation through it, as chat messages, so a request naming it as `previous_response_id` continues
-- from there; and the response object itself, for GET /v1/responses/{id}. Per tenant, under RLS: another
-- tenant's id is simply not found. Deleted with the tenant, or by DELETE /v1/responses/{id}.

CREATE TABLE stored_responses (
  tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          text NOT NULL,
  messages    jsonb NOT NULL,   -- the conversation through this response (without its instructions)
  response    jsonb NOT NULL,   -- the response object as it was returned
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

ALTER TABLE stored_responses ENABLE ROW LEVEL SECURITY;
ALTER TABLE stored_responses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stored_responses
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, DELETE ON stored_responses TO stratus_app;
