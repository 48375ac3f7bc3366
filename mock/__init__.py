"""The mock LLM provider (importable as `soak.mock`)."""
