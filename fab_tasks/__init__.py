"""Fabric task collections, one module per namespace; logic lives in scripts/."""
