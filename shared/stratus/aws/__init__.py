"""AWS adapter: boto3 clients and the S3/SQS operations the domain needs, in domain terms.

May import: config, errors, spans. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""
