"""Shipped build_profiles: installed as llmtp._shipped.build_profiles, read through llmtp.adapters.shipped."""
