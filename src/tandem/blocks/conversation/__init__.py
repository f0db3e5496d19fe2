"""The conversation (LLM) building block: components, PII scrubbing, the response cache."""
