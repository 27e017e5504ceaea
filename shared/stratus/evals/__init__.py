"""Online evaluation: scoring sampled live traffic (the eval_sampler function) and drift. Offline
evaluations (gold suites, retrieval quality) and the report are stratus_tools.evals.

May import: config, db, embeddings, errors, generation, guard, llm, observability, prompts. Never
stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""
