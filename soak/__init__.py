"""llm-soak: a continuous soak tester for LLM gateways."""

__version__ = "0.1.0"
