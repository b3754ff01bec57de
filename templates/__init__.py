"""Shipped templates: installed as llmtp._shipped.templates, read through llmtp.adapters.shipped."""
