"""Guardrails: detectors that score text on the way in (user input, retrieved chunks) and on the way out.

Each detector is a measured component (labelled data, a threshold chosen on a validation split, figures
recorded next to its artifact); policy decisions (block, redact, flag, off) are made by the caller.

May import: citations, db, embeddings, errors, llm, spans, tenants, validation, workflow_state. Never stratus_tools; no
cycles (pyproject.toml, [tool.importlinter]).
"""
