#!/usr/bin/env bash
# The GPU path, proven in one command on a GPU node (under 8 minutes on one H100):
#   bash bench/gpu_check.sh [out.json]
# runs the `gpu`-marked tests (tests/test_gpu.py: CUDA against CPU fp32 for embedding under fp32 / bf16 / fp16,
# fine-tuning killed and resumed, Grad-CAM maps, pinned-memory loading from the pixel cache, the fp16 NaN guard;
# at most 5 minutes) and `bench/embed.py --device cuda` (at most 3), and writes one JSON: the device, each test's
# outcome and measured figures, and the benchmark's figures. Exits non-zero if CUDA is absent, a test fails or the
# benchmark fails.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu_check.json}")
work=$(mktemp -d)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" VLMPROBE_GPU_FIGURES="$work/figures.json" HF_HUB_OFFLINE=1
started=$(date +%s)

timeout 300 python -m pytest tests/test_gpu.py -m gpu -q -rs -p no:cacheprovider --junitxml="$work/junit.xml"
tests_rc=$?
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  timeout 180 python bench/embed.py --device cuda --n-images 512 --source-size 1024 --batch-size 64 --models-sharing 3 --json "$work/bench.json"
  bench_rc=$?
else
  bench_rc=1
fi

python - "$work" "$out" "$tests_rc" "$bench_rc" "$started" <<'PY'
import json, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

work, out, tests_rc, bench_rc, started = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tests = {}
if (work / "junit.xml").exists():
    for case in ET.parse(work / "junit.xml").getroot().iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                tests[case.get("name")] = {"outcome": outcome, "message": (found.get("message") or "")[:500], "seconds": float(case.get("time", 0))}
                break
        else:
            tests[case.get("name")] = {"outcome": outcome, "seconds": float(case.get("time", 0))}
cuda = torch.cuda.is_available()
report = {
    "cuda_available": cuda,
    "device": torch.cuda.get_device_name() if cuda else None,
    "torch": torch.__version__,
    "cuda_version": torch.version.cuda,
    "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
    "tests_exit_code": tests_rc,
    "bench_exit_code": bench_rc,
    "tests": tests,
    "figures": json.loads((work / "figures.json").read_text()) if (work / "figures.json").exists() else {},
    "bench_embed": json.loads((work / "bench.json").read_text()) if (work / "bench.json").exists() else None,
    "wall_seconds": round(time.time() - started, 1),
    "ok": cuda and tests_rc == 0 and bench_rc == 0,
}
out.write_text(json.dumps(report, indent=2))
print(f"gpu check: {'ok' if report['ok'] else 'NOT ok'} ({'no CUDA here' if not cuda else report['device']}); figures in {out}")
sys.exit(0 if report["ok"] else 1)
PY
