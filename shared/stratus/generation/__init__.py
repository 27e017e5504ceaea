"""Answer generation: prompt from the registry, response cache, routed model call, citations, accounting."""
