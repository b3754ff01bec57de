"""The test bed: tiny deterministic GGUF models that exercise llama.cpp's MTP path for real."""
