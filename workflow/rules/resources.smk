# What each job asks a cluster scheduler for (threads are set in the rules themselves).
# Local runs ignore memory, runtime and GPUs; on SLURM they become --mem, --time and --gpus.
# GPU stages grow with the dataset (rows of its manifest) and scale with the retry attempt, so
# a job killed for memory or time is resubmitted with more. Every value can be overridden per
# rule without editing the workflow: --set-resources embed:mem_mb=64000 (or set-resources: in a
# profile; see profiles/slurm/config.yaml).
import math
import os.path


def dataset_images(wildcards, input):
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
    return int(config["datasets"][wildcards.dataset].get("n_images", 20_000))


def gpu_mem_mb(wildcards, input, attempt):
    # ~4 GB for the model and its batches, plus the table being built (up to 1024 float32 a row)
    # and decoded images in flight: ~40 KB an image.
    return (4096 + math.ceil(dataset_images(wildcards, input) / 25)) * attempt


def gpu_runtime_min(wildcards, input, attempt):
    # 2,000 images a minute is a large encoder reading from a slow network file system.
    return (15 + math.ceil(dataset_images(wildcards, input) / 2_000)) * attempt


def finetune_runtime_min(wildcards, input, attempt):
    # Several epochs over the training split, forward and backward.
    return (30 + math.ceil(dataset_images(wildcards, input) / 200)) * attempt


def cpu_mem_mb(wildcards, input, attempt):
    # One embedding table (rows x up to 1024 float64 after standardising) and the models fitted on it.
    return (2048 + math.ceil(dataset_images(wildcards, input) / 50)) * attempt


def cpu_runtime_min(wildcards, input, attempt):
    # A UMAP grid is the slowest fan-out job: tens of fits on the whole table.
    return (10 + math.ceil(dataset_images(wildcards, input) / 500)) * attempt
