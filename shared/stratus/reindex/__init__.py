"""Each tenant's embedding model, and moving a tenant to another one blue/green (docs/retrieval.md,
"Changing the embedding model"): `models` resolves which model a tenant's questions and new chunks use;
`job` fills the new model's vectors beside the old ones, switches, rolls back and drops.

May import: config, db, embeddings, errors, tenants. Never stratus_tools; no cycles (pyproject.toml).
"""
