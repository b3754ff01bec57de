"""Builds of llama.cpp: plan, compile, install, switch and upgrade them."""
