"""Offline evaluations run from the CLI, CI or scripts: gold suites through the query workflow (gold.py),
retrieval quality over a corpus (retrieval.py), and the static HTML report (report*.py; its SQL in
report_queries.py). Online evaluation of sampled traffic (the eval_sampler function) is stratus.evals."""
