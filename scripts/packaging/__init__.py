"""Packaging: merge the LoRA adapter into the base, check parity, write a vLLM bundle."""
