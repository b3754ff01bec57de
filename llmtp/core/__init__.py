"""Pure core: data models, math, parsers and decisions. No I/O of any kind (a test enforces it)."""
