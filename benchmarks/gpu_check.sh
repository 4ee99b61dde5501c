#!/usr/bin/env bash
# The GPU run, in one call: the CUDA tests (CUDA graphs, autocast, ONNX Runtime's GPU providers), then the benchmark
# suite with the paper preset (torch eager and compiled; the ONNX export in ONNX Runtime's TensorRT and CUDA
# providers), its results in benchmarks/results/<gpu name>/ (or under $OUT when set, as on a lent device machine).
#
# On a GPU host with the project installed:   bash benchmarks/gpu_check.sh
# On this workplace's lent GPU machines (a Python 3.12 image with torch, timm, triton, safetensors, httpx,
# prometheus-client and uvloop, and no network), fetch the rest as wheels here first (benchmarks/gpu_wheels.py
# lists them), then carry them:
#     bash benchmarks/gpu_check.sh --fetch-wheels          # here: into .whl/ (git-ignored)
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# An estimate, not yet measured: 6-9 minutes on an H200 for two compilations of vtfpar-b16 (later processes reuse
# inductor's cache), the bare model at batch 1-32 eager and compiled, three servers, HTTP load at concurrency 1, 4,
# 16 and 64; with onnxruntime-gpu, also the export (about a minute) and TensorRT's engine build for batches 1-32
# (minutes, not yet measured). If it runs past a call's 10 minutes, pass suite options through, e.g.
# --concurrency 4,16,64 or --max-batch 16, or --no-onnx.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  # pyproject.toml's dependencies and what they need, at this venv's versions, less what that machine has.
  mapfile -t WHEELS < <(python3 -m benchmarks.gpu_wheels)
  [ "${#WHEELS[@]}" -gt 0 ] || { echo "benchmarks.gpu_wheels listed nothing (is the project installed?)" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
  du -sh .whl
  exit 0
fi

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"

# ONNX Runtime's CUDA and TensorRT providers need onnxruntime-gpu (a 244 MB wheel, more than a lent machine can be
# given) with onnx and onnxscript (the [onnx] extra): without them the suite measures torch only.
# The CUDA review's findings that only a GPU can show (issue 25): no recompiles after warm-up, whatever the batch's
# layout; NVDEC decodes on the device (the check refuses software fallback); bf16 only where the GPU has it.
tests=(tests/app/test_compiled.py::test_cuda_graphs_replay_the_warmed_sizes
       tests/app/test_inference.py::test_cuda_autocast_stays_close_to_fp32
       tests/app/test_decoding.py::test_a_decode_device_the_host_lacks_is_refused_at_startup)
python3 - <<'PY'
import torch
from app.cpus import usable_cpus
from app.settings import Settings
from model.precision import resolve_precision
capability = torch.cuda.get_device_capability()
precision = resolve_precision("auto", torch.device("cuda"))
workers = Settings().for_device("cuda").decode_workers
print(f"compute capability {capability}: auto precision {precision}; usable CPUs {usable_cpus()} "
      f"(os.cpu_count {torch.multiprocessing.cpu_count()}): CUDA decode workers {workers}")
assert precision == ("bf16" if capability >= (8, 0) else "fp16"), "bf16 picked where the GPU only emulates it"
PY
onnx_flag=--no-onnx
if python3 -c "import onnx, onnxscript, onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()"
then
  onnx_flag=
  tests+=(tests/app/test_onnx_serving.py::test_gpu_providers_give_the_cpu_probabilities)
else
  echo "ONNX Runtime skipped: needs onnxruntime-gpu, onnx and onnxscript"
fi
python3 -m pytest -q -rs -p no:cacheprovider "${tests[@]}"

gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().lower().replace(' ', '-'))")
python3 -m benchmarks.suite --device cuda --preset vtfpar-b16 --out "${OUT:-benchmarks/results}/$gpu" ${onnx_flag:+"$onnx_flag"} "$@"
