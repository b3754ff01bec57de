"""llmtp: local LLM serving with llama.cpp, fast and boring."""

__version__ = "0.1.0"
