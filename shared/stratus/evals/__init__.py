"""Offline evaluation: retrieval quality on gold sets, and (later) scoring of sampled live traffic."""
