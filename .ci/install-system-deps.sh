#!/usr/bin/env bash
# Install the Debian packages that the cluster and report tests need: a single-node SLURM cluster
# (slurm-wlm: slurmctld + slurmd + client commands; munge: its authentication daemon) and a headless
# browser (chromium) to render the Snakemake HTML report.
#
# Idempotent (does nothing when everything is present), quiet, and tolerant: if apt cannot install
# the packages (no root, no network, another distribution) it says so and exits 0, and the tests
# that need them skip with a reason naming the missing command.
set -u

packages=(slurm-wlm munge chromium)
# The command each package provides; a package counts as present when its command is on PATH.
declare -A provides=([slurm-wlm]=slurmctld [munge]=munged [chromium]=chromium)

missing=()
for pkg in "${packages[@]}"; do
    if ! command -v "${provides[$pkg]}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${provides[$pkg]}" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: not root, cannot install ${missing[*]}; the SLURM/report tests will skip" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get, cannot install ${missing[*]}; the SLURM/report tests will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp -t install-system-deps.XXXXXX.log)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    echo "install-system-deps: apt-get failed for ${missing[*]} (log: $log); the SLURM/report tests will skip" >&2
    tail -n 5 "$log" >&2
    exit 0
fi
echo "install-system-deps: installed ${missing[*]}"
