-- A read path for lexical search that can use the GIN index.
--
-- Under Row Level Security PostgreSQL evaluates the policy before any qual whose function is not
-- LEAKPROOF, and so never uses an index for such a qual: `tsvector @@ tsquery` and `jsonb @>` are not
-- leakproof, and marking them so needs a true superuser, which Aurora does not give. Measured at 100k
-- chunks: every lexical query became a sequential scan (~0.8 s).
--
-- This view carries the same tenant predicate as the policy and runs with its owner's rights (the
-- migrating user, exempt from RLS on `chunks` once FORCE is dropped for that table), so the planner
-- may combine the predicate with the GIN index. It exposes only the columns search needs; the
-- application role still reads and writes `chunks` itself under RLS. With no tenant bound it returns
-- nothing, exactly like the policy.
ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY;

CREATE VIEW chunk_search AS
  SELECT id, tenant_id, document_id, document_version, lexemes, lexeme_count, metadata
  FROM chunks
  WHERE tenant_id = current_setting('app.tenant_id', true);

GRANT SELECT ON chunk_search TO stratus_app;
