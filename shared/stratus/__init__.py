"""Stratus: a serverless LLM application stack for AWS."""

__version__ = "0.1.0"
