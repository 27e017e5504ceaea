"""Stratus's developer and operator tooling: everything that runs on a workstation or in CI, never in Lambda.

    cli/     the `stratus` command (pyproject's console script) and one module per subcommand group
    local/   the embedded local stack: PostgreSQL with pgvector, moto for AWS, PgBouncer, the gateway
             server, handler routing, the template loader and the demo/dev/ask flows
    evals/   offline evaluations (gold suites, retrieval quality) and the static HTML report
    guard/   detector training, the PII evaluation and `stratus guard scan`
    cache/   the semantic cache threshold calibration (python -m stratus_tools.cache.calibrate)

It imports the runtime package `stratus` freely; `stratus` never imports it (tests/infra/
test_runtime_tooling.py). The Lambda layer ships `stratus` only (layers/common/build.sh), so nothing
the six functions import may live here.
"""
