#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda environment (after the packages of the
# .yaml beside it), from the workflow's working directory. It adds the vlmprobe package, editable
# so the scripts see the checkout's code, WITHOUT its dependencies: pyproject.toml lists every
# stage's libraries (torch included), and a stage's environment must hold only its own.
set -euo pipefail

source_dir="${VLMPROBE_SOURCE:-$PWD}"
if ! grep -qs '^name = "vlmprobe"' "$source_dir/pyproject.toml"; then
    echo "vlmprobe post-deploy: no vlmprobe pyproject.toml in $source_dir;" \
         "run snakemake from the repository root or set VLMPROBE_SOURCE=/path/to/vlmprobe" >&2
    exit 1
fi
python -m pip install --quiet --no-deps --editable "$source_dir"
python -c "import vlmprobe"
