#!/usr/bin/env bash
# The one prepared benchmark run for the lent GPU (H100 / H200): everything issue 16's GPU
# acceptance asks, in one call of about 9 minutes at most.
#
#   device run:  command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 600
#   locally:     OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh     (any machine with a CUDA JAX)
#   dry run:     SMALL=1 OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh  (tiny models, CPU, checks the script)
#   T2V-Turbo:   TURBO=1 bash benchmarks/gpu_check.sh   (issue 20's rows instead of parts 1-4, same budget:
#                turbo 4/8/16 steps vs the 30-step guided sampler on the full-size turbo UNet, frames/s per GPU,
#                max frames per device at batch 1, comm at D = 8, and the projection of 2,300 frames on 8 GPUs;
#                files turbo.json, max_frames_turbo.json, comm.json, gpu_check.log)
#
# .whl/ holds diffusers and importlib_metadata wheels for Python 3.12 (the GPU image lacks
# diffusers); without them the torch column is skipped with a note. Each part is time-boxed and
# every JSON is written as it goes, so a part cut short still leaves what it measured. All files
# land in $OUT (at most 8 come back): gpu_check.log, unet_step.json, half_precision.json, generate.json,
# comm.json, max_frames.json, summary.md. The parts, in order of what the acceptance needs:
#   1. unet_step: the guided step at 24 frames, vanilla vs clip-parallel (attn.exchange kv and
#      inputs) vs diffusers fp16 SDPA eager and torch.compile, and the bf16 matmul peak;
#   1b. half_precision: float16 vs bfloat16 (vs float32) on the full UNet step and VAE decode:
#      time and error on the same random weights (decides auto's GPU dtype and the decoder's);
#   2. generate_full: 30 steps of 24 frames with decode (frames/s per GPU);
#   3. comm: bytes per device and step at D = 8 for both exchange schemes (virtual CPU devices);
#   4. max_frames, only if time is left.
# The last thing printed is the summary, ending with the acceptance table. The parts share a
# persistent compilation cache (/tmp/jax_cache), so a "compile s" can be a cache hit.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache   # compiles and autotuning shared across the parts
START=$(date +%s)
TOTAL=${GPU_CHECK_TOTAL_S:-550}                      # the whole script, seconds
left() { echo $((TOTAL - ($(date +%s) - START))); }
box() { local want=$1 l; l=$(left); if [ "$want" -lt "$l" ]; then echo "$want"; else echo "$l"; fi; }
say() { echo "[gpu_check +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
if [ "${SMALL:-0}" = 1 ]; then   # torch.compile on a CPU needs a C++ toolchain and minutes: left out
  SIZE=(--small); FRAMES=(8); PFRAMES=8; GEN_FRAMES=8; GEN_STEPS=3; MEMLIM=(--mem-limit-mb 96); TCOMPILE=()
else
  SIZE=(); FRAMES=(24); PFRAMES=24; GEN_FRAMES=24; GEN_STEPS=30; MEMLIM=(); TCOMPILE=(--torch-compile)
fi

# ---- packages: carried wheels into /tmp/site; the repository itself on the path
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 && say "installed $(ls .whl | tr '\n' ' ')" || say "wheel install FAILED (torch column will be skipped)"
else
  say "no .whl/ carried: the torch column will be skipped"
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
python3 - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib
for m in ("jax", "jaxlib", "flax", "torch", "diffusers", "numpy"):
    try:
        print(f"{m} {importlib.import_module(m).__version__}")
    except Exception as e:
        print(f"{m}: {type(e).__name__}: {e}")
import jax
print("jax devices:", jax.devices())
EOF

# ---- T2V-Turbo (TURBO=1): its own rows, then stop
if [ "${TURBO:-0}" = 1 ]; then
  if [ "${SMALL:-0}" = 1 ]; then TFRAMES=8; else TFRAMES=16; fi
  T=$(box ${COMM_S:-60})
  say "comm for the projection (box ${T}s)"
  JAX_PLATFORMS=cpu timeout -k 5 "$T" python3 benchmarks/comm.py "${SIZE[@]}" --exchange kv --batch 1 --frames $TFRAMES --out "$OUT/comm.json" 2>&1 | tee -a "$LOG"
  T=$(box ${TURBO_S:-330})   # 4 compiled loops (guided first: the baseline of every ratio), JSON after each
  say "turbo: 4/8/16 steps vs 30 guided, ${TFRAMES}-frame clip (box ${T}s)"
  timeout -k 10 "$T" python3 benchmarks/turbo.py "${SIZE[@]}" --clips 1 --frames $TFRAMES --repeats 2 --steps 4 16 8 \
    --comm-json "$OUT/comm.json" --out "$OUT/turbo.json" 2>&1 | tee -a "$LOG"
  say "turbo exit ${PIPESTATUS[0]}"
  W=$(box $((${MAXF_S:-120} + 45))); T=$((W - 45))
  if [ "$T" -gt 20 ]; then
    say "max_frames at batch 1 (search ${T}s)"
    XLA_PYTHON_CLIENT_MEM_FRACTION=.95 timeout -k 10 "$W" python3 benchmarks/max_frames.py "${SIZE[@]}" "${MEMLIM[@]}" \
      --batch 1 --clip-frames $TFRAMES --no-decode --max-seconds "$T" --out "$OUT/max_frames_turbo.json" 2>&1 | tee -a "$LOG"
    say "max_frames exit ${PIPESTATUS[0]}"
  fi
  say "done (turbo)"
  exit 0
fi

# ---- 1. one guided UNet step at 24 frames: JAX vanilla, clip-parallel (both exchanges), diffusers eager + compiled
W=$(box $((${UNET_S:-300} + 15))); T=$((W - 15))   # W: hard stop; T: the script's own budget inside it
say "unet_step (budget ${T}s)"
timeout -k 10 "$W" python3 benchmarks/unet_step.py "${SIZE[@]}" --frames "${FRAMES[@]}" --parallel --parallel-frames $PFRAMES \
  --exchange kv inputs "${TCOMPILE[@]}" --steps 10 --warmup 2 --budget-s "$T" --out "$OUT/unet_step.json" 2>&1 | tee -a "$LOG"
say "unet_step exit ${PIPESTATUS[0]}"

# ---- 1b. float16 against bfloat16 on the full UNet and VAE decoder: step time and error vs float32
T=$(box ${HALF_S:-120})
if [ "$T" -gt 20 ]; then
  say "half_precision (box ${T}s)"
  timeout -k 10 "$T" python3 benchmarks/half_precision.py "${SIZE[@]}" --frames $PFRAMES --steps 5 --warmup 1 \
    --out "$OUT/half_precision.json" 2>&1 | tee -a "$LOG"
  say "half_precision exit ${PIPESTATUS[0]}"
fi

# ---- 2. one whole 30-step 24-frame generation with decode, if the pipeline exists
if [ "$(left)" -lt 20 ]; then
  say "generate_full skipped: out of time"
elif python3 -c "import vinf_jax.pipeline" >>"$LOG" 2>&1; then
  T=$(box ${GEN_S:-130})
  say "generate_full (box ${T}s)"
  timeout -k 10 "$T" python3 benchmarks/generate_full.py "${SIZE[@]}" --steps $GEN_STEPS --frames $GEN_FRAMES --out "$OUT/generate.json" 2>&1 | tee -a "$LOG"
  say "generate_full exit ${PIPESTATUS[0]}"
else
  say "generate_full skipped: vinf_jax.pipeline does not import"
  echo '{"benchmark": "generate_full", "skipped": "vinf_jax.pipeline does not import"}' >"$OUT/generate.json"
fi

# ---- 3. communication per step for D = 8 (8 virtual CPU devices), both attn.exchange schemes,
#         projected against the step just measured
T=$(box ${COMM_S:-60})
if [ "$T" -gt 5 ]; then
  say "comm (box ${T}s)"
  JAX_PLATFORMS=cpu timeout -k 5 "$T" python3 benchmarks/comm.py "${SIZE[@]}" --exchange both --step-json "$OUT/unet_step.json" \
    --out "$OUT/comm.json" 2>&1 | tee -a "$LOG"
  say "comm exit ${PIPESTATUS[0]}"
fi

# ---- 4. most frames per device (95% of the GPU's memory for JAX), only with time to spare
if [ "$(left)" -ge "${MAXF_MIN_S:-70}" ]; then
  W=$(box $((${MAXF_S:-85} + 45))); T=$((W - 45))   # 45 s for building the models and the last probe
  say "max_frames (search ${T}s)"
  XLA_PYTHON_CLIENT_MEM_FRACTION=.95 timeout -k 10 "$W" python3 benchmarks/max_frames.py "${SIZE[@]}" "${MEMLIM[@]}" \
    --max-seconds "$T" --seed-json "$OUT/unet_step.json" --out "$OUT/max_frames.json" 2>&1 | tee -a "$LOG"
  say "max_frames exit ${PIPESTATUS[0]}"
else
  say "max_frames skipped: $(left) s left"
fi

say "done"
python3 benchmarks/summarize.py "$OUT" 2>&1 | tee "$OUT/summary.md"
