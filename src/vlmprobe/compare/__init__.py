"""Paired model comparisons on the same test samples."""
