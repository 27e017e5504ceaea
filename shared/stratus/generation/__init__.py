"""Answer generation: prompt from the registry, response cache, routed model call, citations, accounting.

May import: cache, citations, config, db, errors, guard, llm, prompts, spans, workflow_state. Never
stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""
