"""`llmtp config`: the settings file, edited key by key, and its generated reference."""
