-- BM25 impact postings: one row per (tenant, term, chunk), read per query term in impact order.
--
-- The GIN path (0002) has to fetch and score every chunk that holds the query's rarer terms (up to
-- bm25_max_postings of them): ~215 ms p50 at 100k chunks. Here each posting carries the term's BM25
-- weight in its chunk without the idf (its "impact"), and the primary key keeps a term's postings in
-- impact order, so retrieval.lexical reads only the head of each query term's list (an index-only scan),
-- scores those candidates exactly and stops once no unread chunk can reach the top k (Fagin's threshold
-- algorithm; docs/retrieval.md).
--
-- Impacts are computed with the tenant's reference parameters (lexical_stats.impact_k1/impact_b/
-- impact_avgdl), fixed when its first postings are written and changed only by a rebuild of all its
-- postings; idf and the current average length are applied at query time, and the drift of the average
-- length since the reference is bounded there (a factor max(1, avgdl / impact_avgdl) on unread impacts).
-- Because the impact of a posting is a pure function of its chunk and those parameters, the ingest
-- transaction finds a chunk's postings again by (tenant, term, impact) and deletes them without a
-- second index on chunk_id.
ALTER TABLE lexical_stats
  ADD COLUMN impact_k1     double precision NOT NULL DEFAULT 1.5,   -- set from STRATUS_BM25_K1/B at each
  ADD COLUMN impact_b      double precision NOT NULL DEFAULT 0.9,   -- rebuild; these are the defaults
  ADD COLUMN impact_avgdl  double precision;   -- NULL until the tenant's first postings are written

CREATE TABLE lexical_postings (
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  term       text NOT NULL,
  impact     real NOT NULL,       -- tf*(k1+1)/(tf + k1*(1-b+b*dl/avgdl)) at the reference parameters
  chunk_id   bigint NOT NULL,     -- chunks.id; removed with its chunk by the ingest transaction
  PRIMARY KEY (tenant_id, term, impact, chunk_id)
);
ALTER TABLE lexical_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE lexical_postings FORCE ROW LEVEL SECURITY;
-- text equality is leakproof, so the planner may use the primary key under this policy.
CREATE POLICY tenant_isolation ON lexical_postings
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON lexical_postings TO stratus_app;

-- No backfill here: under FORCE ROW LEVEL SECURITY the migrating user sees no tenant's rows. A tenant
-- without postings (impact_avgdl NULL) is served by the GIN path, and its next ingest writes all its
-- postings in that transaction (stratus.db.documents.rebuild_postings, also callable by an operator).
