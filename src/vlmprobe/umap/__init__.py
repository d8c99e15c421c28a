"""UMAP grids over n_neighbors x min_dist (cosine): grid computation, quality scores, figures, summary."""
