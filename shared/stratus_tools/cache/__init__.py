"""Response-cache tooling: the semantic threshold calibration (calibrate.py). The cache itself is stratus.cache."""
