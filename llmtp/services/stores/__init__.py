"""The small JSON records llmtp keeps between commands: serve records, calibration, MTP settings."""
