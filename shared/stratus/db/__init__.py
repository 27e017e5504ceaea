"""Database adapter: connections bound to a tenant, migrations, repositories.

May import: aws, config, errors. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""
