"""Model access: one interface over OpenAI, Anthropic, Bedrock and the offline provider, plus routing.

May import: aws, config, embeddings, errors, spans, validation. Never stratus_tools; no cycles
(pyproject.toml, [tool.importlinter]).
"""
