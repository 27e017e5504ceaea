-- Progressive rollout of a prompt version (docs/prompts.md#progressive-rollout). A rollout serves a
-- candidate version to a share of one label's traffic for one tenant, sticky per conversation, user or key
-- (a hash of the rollout id and that key: stratus.prompts.rollout); the online sampler scores each version
-- separately and rolls the share back to 0 when the candidate is worse than the label's version by more
-- than `margin`. At most one active rollout per (tenant, prompt, label). Every change is an audit_log row.

CREATE TABLE prompt_rollouts (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name               text NOT NULL,
  label              text NOT NULL CHECK (label ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  candidate_version  integer NOT NULL,
  baseline_version   integer NOT NULL,           -- what the label served when the rollout started
  share              numeric(5, 2) NOT NULL CHECK (share >= 0 AND share <= 100),  -- percent of sticky keys
  sticky_by          text NOT NULL DEFAULT 'conversation' CHECK (sticky_by IN ('conversation', 'user', 'key')),
  metric             text NOT NULL DEFAULT 'overall' CHECK (metric ~ '^[a-z][a-z0-9_]{0,63}$'),
  margin             real NOT NULL CHECK (margin >= 0 AND margin <= 1),
  min_samples        integer NOT NULL CHECK (min_samples >= 1),
  state              text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'completed', 'rolled_back')),
  reason             text,                        -- why it ended (a regression's figures, who aborted)
  last_check         jsonb,                       -- the sampler's latest per-version figures
  created_by         text NOT NULL,               -- a key id, or operator:<user>/<login>
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  ended_at           timestamptz,
  FOREIGN KEY (name, candidate_version) REFERENCES prompt_versions (name, version),
  FOREIGN KEY (name, baseline_version) REFERENCES prompt_versions (name, version),
  CHECK ((state = 'active') = (ended_at IS NULL)),
  CHECK (state <> 'rolled_back' OR share = 0)
);
CREATE UNIQUE INDEX prompt_rollouts_one_active ON prompt_rollouts (tenant_id, name, label) WHERE state = 'active';
CREATE INDEX prompt_rollouts_history ON prompt_rollouts (tenant_id, name, created_at DESC);

ALTER TABLE prompt_rollouts ENABLE ROW LEVEL SECURITY;
ALTER TABLE prompt_rollouts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON prompt_rollouts
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Rollouts end (completed, rolled_back) but are never deleted by the application: they are the history.
GRANT SELECT, INSERT, UPDATE ON prompt_rollouts TO stratus_app;

-- Which rollout served a sampled request (NULL: none), so the sampler compares exactly the requests the
-- rollout split, by the version each was served.
ALTER TABLE eval_samples ADD COLUMN rollout_id uuid;
CREATE INDEX eval_samples_rollout ON eval_samples (tenant_id, rollout_id) WHERE rollout_id IS NOT NULL;
