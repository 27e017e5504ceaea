"""Guardrail tooling: training the detectors (training.py, used by scripts/train_*.py), the PII
evaluation (pii_eval.py) and `stratus guard scan` / `stratus eval guard` (scan.py). The detectors the
functions run are stratus.guard."""
