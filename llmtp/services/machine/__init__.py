"""This machine: what it has (detect) and whether it is healthy (doctor)."""
