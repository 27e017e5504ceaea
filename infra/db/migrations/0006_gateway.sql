-- Gateway: API keys, per-tenant limits and budgets, rate-limit windows, budget reservations and spend,
-- and one trace row per request.
--
-- Two lookups happen before a tenant is known or across tenants: a key by its prefix (authentication)
-- and the tenant list (admin). They go through SECURITY DEFINER functions owned by the migrating user,
-- on tables that ENABLE but do not FORCE Row Level Security, so the owner may read across tenants
-- inside those functions while the application role still sees only its bound tenant (the 0002
-- pattern). Admission and settlement are PL/pgSQL functions so that each is one round trip; they run
-- as the caller (SECURITY INVOKER), under the bound tenant's RLS.

CREATE TABLE api_keys (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  prefix               text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z2-7]{12}$'),  -- shown in lists and traces
  key_hash             bytea NOT NULL CHECK (octet_length(key_hash) = 32),    -- sha256 of the whole key
  name                 text NOT NULL DEFAULT '',
  scopes               text[] NOT NULL CHECK (scopes <@ ARRAY['inference', 'documents', 'admin']
                                              AND cardinality(scopes) > 0),
  requests_per_minute  integer CHECK (requests_per_minute > 0),   -- NULL: the settings' key default
  tokens_per_minute    integer CHECK (tokens_per_minute > 0),
  created_at           timestamptz NOT NULL DEFAULT now(),
  revoked_at           timestamptz,
  last_used_at         timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- A tenant's own limits; a NULL column means the settings' default applies. No row: all defaults.
CREATE TABLE tenant_limits (
  tenant_id                text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  requests_per_minute      integer CHECK (requests_per_minute > 0),
  tokens_per_minute        integer CHECK (tokens_per_minute > 0),
  key_requests_per_minute  integer CHECK (key_requests_per_minute > 0),
  key_tokens_per_minute    integer CHECK (key_tokens_per_minute > 0),
  budget_usd               numeric(14, 6) CHECK (budget_usd >= 0),   -- NULL: no budget
  budget_period            text NOT NULL DEFAULT 'month' CHECK (budget_period IN ('day', 'month')),
  updated_at               timestamptz NOT NULL DEFAULT now()
);

-- Fixed one-minute UTC windows, one row per subject ('tenant', or 'key:<key id>') that is reset in
-- place when a new window starts, so the table never grows with time. The row lock is what makes
-- admission exact across concurrent Lambdas.
CREATE TABLE rate_counters (
  tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  subject       text NOT NULL,
  window_start  timestamptz NOT NULL,
  requests      integer NOT NULL DEFAULT 0,
  tokens        bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, subject)
);

-- Spend per tenant per UTC day; a month's spend is the sum of its days (the budget period may change).
CREATE TABLE budget_usage (
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  day        date NOT NULL,
  spent_usd  numeric(14, 6) NOT NULL DEFAULT 0,
  requests   integer NOT NULL DEFAULT 0,
  tokens     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, day)
);

-- One row per admitted request until it settles: its worst-case cost (counted against the budget) and
-- the tokens it reserved in its rate windows. A crashed request's row expires and is reclaimed lazily.
CREATE TABLE budget_reservations (
  tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  request_id    text NOT NULL,
  key_id        uuid,
  window_start  timestamptz NOT NULL,
  tokens        integer NOT NULL,
  amount_usd    numeric(14, 6) NOT NULL,
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX budget_reservations_expiry ON budget_reservations (tenant_id, expires_at);

CREATE TABLE traces (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  request_id      text NOT NULL,
  key_prefix      text,
  route           text NOT NULL,
  method          text NOT NULL,
  status_code     integer NOT NULL,
  model_alias     text,
  deployment      text,
  provider        text,
  prompt_name     text,
  prompt_version  integer,
  input_tokens    integer NOT NULL DEFAULT 0,
  output_tokens   integer NOT NULL DEFAULT 0,
  cost_usd        numeric(14, 10) NOT NULL DEFAULT 0,
  cache_status    text,
  chunk_ids       bigint[] NOT NULL DEFAULT '{}',
  timings_ms      jsonb NOT NULL DEFAULT '{}',
  latency_ms      real NOT NULL,
  status          text NOT NULL CHECK (status IN ('ok', 'error')),
  error_code      text,
  error_message   text,
  streamed        boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now()
);
-- Not unique: the request id may come from the client's x-request-id, and a reused one must not lose a trace.
CREATE INDEX traces_request ON traces (tenant_id, request_id);
CREATE INDEX traces_tenant_time ON traces (tenant_id, created_at DESC);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['api_keys', 'tenant_limits', 'rate_counters', 'budget_usage',
                           'budget_reservations', 'traces'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;
-- The definer functions below read these across tenants as their owner: RLS stays on for everyone else.
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;

-- Authentication: the key with this prefix, whatever its tenant or state (the caller compares the hash
-- and checks revocation, so unknown, revoked and wrong keys cost the same). When the presented hash
-- matches a live key, last_used_at is refreshed at most once a minute, to keep the write rare.
CREATE FUNCTION gateway_key_lookup(p_prefix text, p_hash bytea)
RETURNS TABLE (id uuid, tenant_id text, key_hash bytea, scopes text[], revoked_at timestamptz,
               requests_per_minute integer, tokens_per_minute integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE api_keys k SET last_used_at = now()
   WHERE k.prefix = p_prefix AND k.key_hash = p_hash AND k.revoked_at IS NULL
     AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
  RETURN QUERY SELECT k.id, k.tenant_id, k.key_hash, k.scopes, k.revoked_at, k.requests_per_minute,
                      k.tokens_per_minute
                 FROM api_keys k WHERE k.prefix = p_prefix;
END
$$;

-- Admin: every tenant. Only admin-scoped routes and the operator CLI call it.
CREATE FUNCTION gateway_list_tenants()
RETURNS TABLE (id text, name text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.name, t.created_at FROM tenants t ORDER BY t.id
$$;

-- Admission, in one call: the tenant's rate window, then the key's (rows locked in that fixed
-- order, so concurrent admissions and settlements cannot deadlock), then the budget. Nothing is counted
-- or reserved when any check refuses. The tenant row lock also serialises the budget check: every
-- admission of a tenant passes through it. Returns the figures the x-ratelimit-* headers need.
CREATE FUNCTION gateway_admit(
  p_tenant text, p_key_id uuid, p_request_id text, p_tokens integer, p_max_cost numeric,
  p_now timestamptz, p_tenant_rpm integer, p_tenant_tpm integer, p_key_rpm integer, p_key_tpm integer,
  p_default_key_rpm integer, p_default_key_tpm integer, p_reservation_ttl interval)
RETURNS TABLE (admitted boolean, reason text, scope text, window_end timestamptz,
               tenant_rpm integer, tenant_requests integer, tenant_tpm integer, tenant_tokens bigint,
               key_rpm integer, key_requests integer, key_tpm integer, key_tokens bigint,
               budget_usd numeric, budget_period text, spent_usd numeric, reserved_usd numeric)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_now     timestamptz := coalesce(p_now, now());
  v_window  timestamptz := date_trunc('minute', v_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  v_limits  tenant_limits%ROWTYPE;
  v_t       rate_counters%ROWTYPE;
  v_k       rate_counters%ROWTYPE;
  v_from    date;
BEGIN
  SELECT * INTO v_limits FROM tenant_limits l WHERE l.tenant_id = p_tenant;
  tenant_rpm := coalesce(v_limits.requests_per_minute, p_tenant_rpm);
  tenant_tpm := coalesce(v_limits.tokens_per_minute, p_tenant_tpm);
  -- A key's own limit, else the tenant's default for its keys, else the settings' (NULL: no key limit).
  key_rpm := coalesce(p_key_rpm, v_limits.key_requests_per_minute, p_default_key_rpm);
  key_tpm := coalesce(p_key_tpm, v_limits.key_tokens_per_minute, p_default_key_tpm);
  budget_usd := v_limits.budget_usd;
  budget_period := coalesce(v_limits.budget_period, 'month');
  window_end := v_window + interval '1 minute';
  admitted := true;
  -- Counters and reservations are soft state: skipping the commit's WAL flush (~4 ms here) is worth the
  -- risk of losing the last fraction of a second of counts if the database itself crashes. Visibility
  -- and locking, and so exactness under concurrency, are unchanged.
  PERFORM set_config('synchronous_commit', 'off', true);

  INSERT INTO rate_counters AS c (tenant_id, subject, window_start) VALUES (p_tenant, 'tenant', v_window)
    ON CONFLICT (tenant_id, subject) DO NOTHING;
  SELECT * INTO v_t FROM rate_counters c WHERE c.tenant_id = p_tenant AND c.subject = 'tenant' FOR UPDATE;
  IF v_t.window_start <> v_window THEN
    v_t.requests := 0; v_t.tokens := 0;
  END IF;
  tenant_requests := v_t.requests; tenant_tokens := v_t.tokens;

  IF p_key_id IS NOT NULL AND (key_rpm IS NOT NULL OR key_tpm IS NOT NULL) THEN
    INSERT INTO rate_counters AS c (tenant_id, subject, window_start)
      VALUES (p_tenant, 'key:' || p_key_id, v_window) ON CONFLICT (tenant_id, subject) DO NOTHING;
    SELECT * INTO v_k FROM rate_counters c
      WHERE c.tenant_id = p_tenant AND c.subject = 'key:' || p_key_id FOR UPDATE;
    IF v_k.window_start <> v_window THEN
      v_k.requests := 0; v_k.tokens := 0;
    END IF;
    key_requests := v_k.requests; key_tokens := v_k.tokens;
  END IF;

  IF key_rpm IS NOT NULL AND key_requests >= key_rpm THEN
    admitted := false; reason := 'requests'; scope := 'key';
  ELSIF key_tpm IS NOT NULL AND key_tokens + p_tokens > key_tpm THEN
    admitted := false; reason := 'tokens'; scope := 'key';
  ELSIF tenant_requests >= tenant_rpm THEN
    admitted := false; reason := 'requests'; scope := 'tenant';
  ELSIF tenant_tokens + p_tokens > tenant_tpm THEN
    admitted := false; reason := 'tokens'; scope := 'tenant';
  END IF;

  -- Budget: this period's settled spend plus the live reservations plus this request's worst case.
  DELETE FROM budget_reservations r WHERE r.tenant_id = p_tenant AND r.expires_at <= v_now;
  v_from := CASE WHEN budget_period = 'day' THEN (v_now AT TIME ZONE 'UTC')::date
                 ELSE date_trunc('month', v_now AT TIME ZONE 'UTC')::date END;
  IF admitted AND budget_usd IS NOT NULL THEN
    SELECT coalesce(sum(u.spent_usd), 0) INTO spent_usd FROM budget_usage u
      WHERE u.tenant_id = p_tenant AND u.day >= v_from;
    SELECT coalesce(sum(r.amount_usd), 0) INTO reserved_usd FROM budget_reservations r
      WHERE r.tenant_id = p_tenant;
    IF spent_usd + reserved_usd + p_max_cost > budget_usd THEN
      admitted := false; reason := 'budget'; scope := 'tenant';
    END IF;
  END IF;

  IF admitted THEN
    INSERT INTO budget_reservations (tenant_id, request_id, key_id, window_start, tokens, amount_usd,
                                     created_at, expires_at)
      VALUES (p_tenant, p_request_id, p_key_id, v_window, p_tokens, p_max_cost, v_now,
              v_now + p_reservation_ttl);
    UPDATE rate_counters c SET window_start = v_window, requests = tenant_requests + 1,
                               tokens = tenant_tokens + p_tokens
      WHERE c.tenant_id = p_tenant AND c.subject = 'tenant';
    tenant_requests := tenant_requests + 1; tenant_tokens := tenant_tokens + p_tokens;
    IF key_requests IS NOT NULL THEN
      UPDATE rate_counters c SET window_start = v_window, requests = key_requests + 1,
                                 tokens = key_tokens + p_tokens
        WHERE c.tenant_id = p_tenant AND c.subject = 'key:' || p_key_id;
      key_requests := key_requests + 1; key_tokens := key_tokens + p_tokens;
    END IF;
    reserved_usd := coalesce(reserved_usd, 0) + p_max_cost;
  END IF;
  RETURN NEXT;
END
$$;

-- Settlement: the reservation is replaced by the real figures (tokens into the window it was counted
-- in, if that window is still current; cost into the day's spend). Deleting the reservation makes a
-- second call for the same request a no-op. Locks follow admission's order.
CREATE FUNCTION gateway_settle(p_tenant text, p_request_id text, p_tokens integer, p_cost numeric,
                               p_now timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_now  timestamptz := coalesce(p_now, now());
  v_res  budget_reservations%ROWTYPE;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);  -- as in gateway_admit
  PERFORM 1 FROM rate_counters c WHERE c.tenant_id = p_tenant AND c.subject = 'tenant' FOR UPDATE;
  DELETE FROM budget_reservations r WHERE r.tenant_id = p_tenant AND r.request_id = p_request_id
    RETURNING * INTO v_res;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE rate_counters c SET tokens = greatest(0, c.tokens + p_tokens - v_res.tokens)
    WHERE c.tenant_id = p_tenant AND c.window_start = v_res.window_start
      AND (c.subject = 'tenant' OR c.subject = 'key:' || v_res.key_id);
  IF p_tokens > 0 OR p_cost > 0 THEN
    INSERT INTO budget_usage AS u (tenant_id, day, spent_usd, requests, tokens)
      VALUES (p_tenant, (v_res.created_at AT TIME ZONE 'UTC')::date, p_cost, 1, p_tokens)
      ON CONFLICT (tenant_id, day) DO UPDATE
        SET spent_usd = u.spent_usd + excluded.spent_usd, requests = u.requests + 1,
            tokens = u.tokens + excluded.tokens;
  END IF;
  RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION gateway_key_lookup(text, bytea), gateway_list_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gateway_key_lookup(text, bytea), gateway_list_tenants(),
  gateway_admit(text, uuid, text, integer, numeric, timestamptz, integer, integer, integer, integer, integer,
                integer, interval),
  gateway_settle(text, text, integer, numeric, timestamptz) TO stratus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys, tenant_limits, rate_counters, budget_usage,
  budget_reservations, traces TO stratus_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO stratus_app;
