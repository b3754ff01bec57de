"""Distributed serving over llama.cpp's RPC backend: the client side and the worker."""
