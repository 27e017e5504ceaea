"""Benchmarks: `make bench` runs them and records results in bench/results/."""
