"""The HTTP gateway: an OpenAI-compatible API over the query workflow, plus documents and administration.

Layers: `app.py` builds the FastAPI app (served by uvicorn: behind the Lambda Web Adapter on AWS, in
`stratus dev` locally); routes/ hold the endpoints; keys.py, admission.py and traces.py are the domain of
tenancy, limits and per-request traces; errors.py maps every failure to the OpenAI error shape once.

May import: every domain package (generation, guard, retrieval, ingest, prompts, evals) and the adapters;
nothing imports it. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""
