"""Linear probes with the LinearSVC protocol of Takeda et al. (2025), per (dataset, model), and their summary."""
