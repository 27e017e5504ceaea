-- Retrieval settings per tenant: which reranker its queries get (docs/retrieval.md#reranking).
-- A tenant without a row, or a NULL column, follows the deployment's settings (STRATUS_RERANKER,
-- STRATUS_RERANK_MODEL), so changing the default reaches every tenant that did not choose.

CREATE TABLE retrieval_settings (
  tenant_id     text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  reranker      text CHECK (reranker IN ('none', 'bedrock')),
  rerank_model  text CHECK (rerank_model IN ('amazon.rerank-v1:0', 'cohere.rerank-v3-5:0')),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE retrieval_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retrieval_settings
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON retrieval_settings TO stratus_app;
