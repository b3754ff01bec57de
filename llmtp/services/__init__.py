"""Services: use-cases that wire the pure core to the adapters."""
