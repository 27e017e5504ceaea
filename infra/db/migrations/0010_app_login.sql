-- The application logs in as stratus_app itself (no SET ROLE from the owner's login): a session that
-- starts as stratus_app has nothing to RESET ROLE back to, so a statement smuggled into a query cannot
-- leave Row Level Security. The owner (the migrating user) keeps its own login for migrations and for
-- publishing prompts.
--
-- Only LOGIN is changed here: 0001 created the role NOSUPERUSER NOBYPASSRLS, and naming those attributes
-- in ALTER ROLE would need a superuser (Aurora's master user is none); the check below refuses to go on
-- if they were ever changed. No password: locally the embedded server trusts socket logins, and on AWS the
-- role authenticates with IAM (rds_iam), through RDS Proxy only.

ALTER ROLE stratus_app LOGIN;

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'stratus_app' AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'stratus_app must be NOSUPERUSER NOBYPASSRLS: Row Level Security must apply to it';
  END IF;
  -- Aurora and RDS: log in with an IAM auth token (RDS Proxy's end-to-end IAM authentication).
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
    GRANT rds_iam TO stratus_app;
  END IF;
  -- It may connect to this database (PUBLIC may too by default; this survives a REVOKE from PUBLIC).
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO stratus_app', current_database());
END
$$;
