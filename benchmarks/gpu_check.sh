#!/usr/bin/env bash
# One GPU check in <= 8 minutes: golden parity on CUDA fp32, the bf16 shift, clips/s per backbone at batch 64 and
# the % of the GPU's bf16 peak (see benchmarks/gpu_check.py; JSON schema in benchmarks/README.md).
#
#   benchmarks/gpu_check.sh              # on a machine with a CUDA GPU -> benchmarks/results/<gpu>-<date>.json
#   benchmarks/gpu_check.sh --dry-run    # anywhere: CPU, tiny configs, the cheapest golden (checks the script)
#
# Extra arguments go to gpu_check.py (--out, --batch, --goldens, --backbones, --budget).
set -euo pipefail

# The whole check must fit one 8-minute device slot; gpu_check.py stops starting sections at --budget (450 s).
LIMIT_S=480
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"

dry_run=0
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && dry_run=1; done
if [[ $dry_run -eq 0 ]]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "gpu_check.sh: no NVIDIA GPU visible (nvidia-smi -L failed); run with --dry-run to check the script" >&2
        exit 2
    fi
    nvidia-smi -L
fi
# Every package the check imports, named in one message instead of a traceback halfway through.
"$PYTHON" - <<'PY'
import importlib, sys
need = ["torch", "torchaudio", "torchmetrics", "numpy", "scipy", "hear21passt", "transformers", "whisper", "tiktoken"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check.sh: missing Python packages {missing}; install the project with pip install -e '.[all]'")
PY
exec timeout --signal=TERM --kill-after=10 "$LIMIT_S" "$PYTHON" benchmarks/gpu_check.py "$@"
