"""Test support shared by the tiers and the benchmarks: loopback provider wire servers (upstreams/)."""
