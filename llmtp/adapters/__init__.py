"""Adapters: the only code that touches the OS, the network, drivers and other processes."""
