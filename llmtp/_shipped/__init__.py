"""Data shipped with llmtp, mapped here from the repository's top level (see pyproject.toml); read it
through llmtp.adapters.shipped only."""
