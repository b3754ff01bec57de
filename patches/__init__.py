"""Shipped patches: installed as llmtp._shipped.patches, read through llmtp.adapters.shipped."""
