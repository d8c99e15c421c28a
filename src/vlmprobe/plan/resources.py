"""What each job asks a cluster scheduler for (threads are set in the rules themselves).

Local runs ignore memory, runtime and GPUs; on SLURM they become --mem, --time and --gpus. GPU stages grow
with the dataset (rows of its manifest) and scale with the retry attempt, so a job killed for memory or time
is resubmitted with more. Every value can be overridden per rule without editing the workflow:
``--set-resources embed:mem_mb=64000`` (or ``set-resources:`` in a profile; see profiles/slurm/config.yaml).
Snakemake calls these methods with the job's wildcards, inputs and attempt.
"""

from __future__ import annotations

import math
import os.path
from typing import Any


class Resources:
    """Memory (MB) and runtime (minutes) of the jobs, from the validated config."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        heatmaps = config["heatmaps"]
        self.heatmap_gpu = 1 if heatmaps["gpu"] else 0

    def dataset_images(self, wildcards, input) -> int:
        """Rows of the dataset's manifest; before it exists, the configured size or a generous guess.

        Snakemake re-evaluates resources once a job's inputs exist, so the guess only shows in a dry
        run; the submitted job is sized from the real manifest.
        """
        manifest = input.get("manifest")
        if manifest and os.path.exists(manifest):
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                return pq.read_metadata(manifest).num_rows
            except (OSError, pa.ArrowException):
                pass  # unreadable: the job reading it will report that, not the scheduler
        return int(self.config["datasets"][wildcards.dataset].get("n_images", 20_000))

    def gpu_mem_mb(self, wildcards, input, attempt) -> int:
        # ~4 GB for the model and its batches, plus the table being built (up to 1024 float32 a row)
        # and decoded images in flight: ~40 KB an image.
        return (4096 + math.ceil(self.dataset_images(wildcards, input) / 25)) * attempt

    def gpu_runtime_min(self, wildcards, input, attempt) -> int:
        # 2,000 images a minute is a large encoder reading from a slow network file system.
        return (15 + math.ceil(self.dataset_images(wildcards, input) / 2_000)) * attempt

    def finetune_runtime_min(self, wildcards, input, attempt) -> int:
        # Several epochs over the training split, forward and backward.
        return (30 + math.ceil(self.dataset_images(wildcards, input) / 200)) * attempt

    def cpu_mem_mb(self, wildcards, input, attempt) -> int:
        # One embedding table (rows x up to 1024 float64 after standardising) and the models fitted on it.
        return (2048 + math.ceil(self.dataset_images(wildcards, input) / 50)) * attempt

    def cpu_runtime_min(self, wildcards, input, attempt) -> int:
        # A UMAP grid is the slowest fan-out job: tens of fits on the whole table.
        return (10 + math.ceil(self.dataset_images(wildcards, input) / 500)) * attempt

    def heatmap_mem_mb(self, wildcards, attempt) -> int:
        return 8192 * attempt

    def heatmap_runtime_min(self, wildcards, attempt) -> int:
        # ~(max_annotated + n_random) x 3 forward-backward passes; gradient-free methods (ScoreCAM) run one
        # forward pass per channel of the target layer, so they get far more time.
        heatmaps = self.config["heatmaps"]
        images = heatmaps["max_annotated"] + heatmaps["n_random"]
        per_image = 2.0 if heatmaps["method"] == "scorecam" else 0.1
        return int((15 + images * per_image) * attempt)
