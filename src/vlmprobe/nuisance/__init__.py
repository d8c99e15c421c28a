"""Nuisance probes: what an embedding encodes besides the diagnosis, and shortcut sensitivity."""
