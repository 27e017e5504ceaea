"""Database adapter: connections bound to a tenant, migrations, repositories."""
