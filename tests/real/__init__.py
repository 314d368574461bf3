"""Tests on the real Gemma 3 270M (imported once per session from the packaged GGUF)."""
