"""File formats every stage shares: manifest, embedding table, predictions, probe heads, attribution maps."""
