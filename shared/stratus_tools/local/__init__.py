"""The embedded local stack: PostgreSQL with pgvector, moto for AWS, local handler routing."""
