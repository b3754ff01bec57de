"""`llmtp setup`: the guided, resumable first run."""
