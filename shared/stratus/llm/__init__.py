"""Model access: one interface over OpenAI, Anthropic, Bedrock and the offline provider, plus routing."""
