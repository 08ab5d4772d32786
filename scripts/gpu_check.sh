#!/usr/bin/env bash
# GPU check of openrs's cost accounting: on a machine with one NVIDIA GPU, run `openrs train tiny` (bf16, no vLLM)
# and `openrs eval` (transformers backend) with the real NVML sampler, then check each cost ledger against the wall
# time this script measured and against NVML read by this script on its own (pynvml, not openrs); a third ledger
# comes from `open_monitor` around 15 s of bf16 matrix products, so the energy checks also see a loaded GPU:
#   - one GPU billed, the one CUDA_VISIBLE_DEVICES names (the training is given it by UUID, the eval by index);
#   - gpu_seconds = the ledger's wall time x 1 GPU (1 %), and between 0.5 and 1.02 x the command's wall time;
#   - energy from the NVML counter, equal (5 %) to the counter's own rise over the ledger's window, within 25 % of
#     the mean power this script sampled x gpu_seconds, and between 0.8 x idle power and 1.05 x the power limit.
# It prints one PASS/FAIL line per check and exits 1 if any fails. Each step has a timeout: 8 minutes at worst.
#
#   scripts/gpu_check.sh --prepare DIR [--python 3.12] [--have "NAME ..."]
#                                   # here (network): wheels of openrs and of its needs that a CUDA box lacks
#                                   # (torch/transformers/numpy stay; --have names more packages the box has)
#   scripts/gpu_check.sh DIR [WORK]                      # the GPU box, no network: installs from DIR, runs, checks
#   scripts/gpu_check.sh --dry [WORK] [--wheels DIR]     # any machine: same steps on CPU with a fake NVML
#
# Environment: PYTHON, the interpreter with CUDA torch (default python3). When it is a venv already, openrs is
# installed into it (the box is a throwaway); else into a --system-site-packages venv under WORK.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$HERE/.venv/bin/python" ]; then  # here: the project's venv
    case "${1:-}" in --prepare|--dry) PY="$HERE/.venv/bin/python" ;; esac
fi
# Direct needs of `openrs train tiny` + `openrs eval` (openrs itself goes in with --no-deps: DeepSpeed, matplotlib
# and ninja are not used by this check); pip resolves their dependencies from DIR.
NEEDS="typer rich pydantic pyyaml trl accelerate datasets math-verify nvidia-ml-py"
# What a CUDA box with torch and transformers already has (their own dependencies): never carried.
BOX="torch transformers triton tokenizers safetensors huggingface-hub hf-xet numpy sympy mpmath networkx setuptools"
FAILED=0

say() { printf '%s\n' "$*"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; FAILED=1; }
die() { fail "$*"; exit 1; }

# ---- --prepare: wheels for an offline GPU box ----------------------------------------------------------------
prepare() {
    local dir="$1" pyver="$2" have="$3"
    mkdir -p "$dir" || die "cannot create $dir"
    [ -n "$pyver" ] || pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    "$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$dir" "$HERE" || die "pip wheel of openrs failed"
    # The closure of NEEDS as installed here (the tested versions), less what the box brings.
    "$PY" - "$BOX $have" $NEEDS >"$dir/needs.txt" <<'PY' || die "cannot list the needs (run with the project's venv)"
import re, sys
from importlib import metadata
from packaging.requirements import Requirement

norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
box = set(sys.argv[1].split())
seen, todo = {}, [(norm(n), "") for n in sys.argv[2:]]
while todo:  # (name, extra): a requirement such as pkg[extra] brings the extra's needs too
    n, extra = todo.pop()
    if (n, extra) in seen or n in box or (n.startswith(("nvidia-", "cuda-")) and n != "nvidia-ml-py"):
        continue
    dist = metadata.distribution(n)  # raises when a need is not installed here: prepare from the project's venv
    seen[(n, extra)] = dist.version
    for r in dist.requires or []:
        req = Requirement(r)
        if not req.marker or req.marker.evaluate({"extra": extra}):
            todo += [(norm(req.name), e) for e in ["", *req.extras]]
for n, v in sorted({(n, v) for (n, _), v in seen.items()}):
    print(f"{n}=={v}")
PY
    local abi="cp${pyver/./}"
    while read -r req; do
        "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dir" --python-version "$pyver" \
            --implementation cp --abi "$abi" --abi abi3 --abi none --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any "$req" 2>/dev/null \
        || "$PY" -m pip wheel -q --no-deps -w "$dir" "$req" \
        || die "no wheel for $req (Python $pyver, x86_64)"
    done <"$dir/needs.txt"
    printf 'python %s\nprepared %s\n' "$pyver" "$(date -u +%FT%TZ)" >"$dir/PREPARED"
    pass "prepared $(ls "$dir"/*.whl | wc -l) wheels for Python $pyver in $dir ($(du -sh "$dir" | cut -f1))"
}

# ---- install on the box ---------------------------------------------------------------------------------------
install() {
    local dir="$1" work="$2"
    local want; want="$(sed -n 's/^python //p' "$dir/PREPARED" 2>/dev/null)"
    local have; have="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$want" = "$have" ] || die "wheels in $dir are for Python ${want:-?}, $PY is $have: --prepare DIR --python $have"
    "$PY" -c 'import torch, transformers; assert torch.cuda.is_available(), "torch sees no CUDA GPU"' \
        || die "$PY needs CUDA torch and transformers (set PYTHON=...)"
    # A venv made from a venv would see the base interpreter's packages, not torch: install into a venv directly.
    if "$PY" -c 'import sys; raise SystemExit(sys.prefix == sys.base_prefix)'; then
        say "installing into $PY's venv"
    else
        "$PY" -m venv --system-site-packages "$work/venv" || die "python -m venv failed (no python3-venv?)"
        PY="$work/venv/bin/python"
    fi
    # The plan runs <python's dir>/accelerate: if the box's accelerate satisfied pip, the venv has no script of its
    # own, and the box's would run a python without openrs. A two-line launcher with this python.
    local bin; bin="$(dirname "$PY")"
    [ -x "$bin/accelerate" ] || { printf '#!%s\nfrom accelerate.commands.accelerate_cli import main\nmain()\n' "$PY" \
        >"$bin/accelerate" && chmod +x "$bin/accelerate"; } || die "cannot write $bin/accelerate"
    timeout 60 "$PY" -m pip install -q --no-index --find-links "$dir" --no-deps openrs \
        && timeout 90 "$PY" -m pip install -q --no-index --find-links "$dir" $NEEDS \
        || die "offline install from $dir failed (see pip's message above)"
    # openrs went in without its dependency check: check the box's torch/transformers against its pins here.
    "$PY" - <<'PY' || die "the box's packages do not meet openrs's requirements (above)"
from importlib import metadata
from packaging.requirements import Requirement

skip = {"deepspeed", "matplotlib", "ninja", "pandas"}  # not used by this check (pandas comes with datasets)
bad = []
for r in metadata.requires("openrs"):
    req = Requirement(r)
    if req.marker or req.name in skip:
        continue
    try:
        v = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        v = None
    if v is None or not req.specifier.contains(v, prereleases=True):
        bad.append(f"{req} (installed: {v})")
print("\n".join(f"FAIL requirement {b}" for b in bad) or "PASS openrs's requirements met")
raise SystemExit(1 if bad else 0)
PY
    pass "installed openrs offline into $("$PY" -c 'import sys; print(sys.prefix)')"
}

# ---- an NVML power/energy sampler of this script's own --------------------------------------------------------
sampler() {  # sampler OUT UUID: polls until OUT.stop exists; fake NVML when OPENRS_NVML_BACKEND=fake:...
    "$PY" - "$1" "$2" <<'PY' &
import json, os, sys, time

out, uuid = sys.argv[1], sys.argv[2]
spec = os.environ.get("OPENRS_NVML_BACKEND", "")
if spec.startswith("fake:"):  # --dry: openrs's fake on the system clock stands in for the GPU
    from openrs_cli.cost.backend import FakeBackend, SystemClock

    fake = FakeBackend.from_spec(spec[5:], clock=SystemClock())
    read = lambda: (fake.power_mw(uuid), fake.energy_mj(uuid))
    limit = fake.devices()[0].power_limit_w
else:
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByUUID(uuid)
    read = lambda: (pynvml.nvmlDeviceGetPowerUsage(h), pynvml.nvmlDeviceGetTotalEnergyConsumption(h))
    limit = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000
with open(out, "w") as f:
    f.write(json.dumps({"power_limit_w": limit}) + "\n")
    while not os.path.exists(out + ".stop"):
        p, e = read()
        f.write(json.dumps({"t": time.time(), "power_w": p / 1000, "energy_j": e / 1000}) + "\n")
        f.flush()
        time.sleep(0.2)
PY
    SAMPLER_PID=$!
}

stop_sampler() { touch "$1.stop"; wait "$SAMPLER_PID" 2>/dev/null; }

# ---- the checks of one ledger ---------------------------------------------------------------------------------
check() {  # check NAME RUN_DIR SAMPLES T0 T1 UUID GPUS BACKEND IDLE_W
    "$PY" - "$@" <<'PY' || FAILED=1
import json, sys

from openrs_cli.cost.ledger import ledger_files, read_ledger
from openrs_cli.cost.summary import summarize_run

name, run_dir, samples_path, t0, t1, uuid, gpus, backend, idle_w = sys.argv[1:]
t0, t1, gpus, idle_w = float(t0), float(t1), int(gpus), float(idle_w)
bad = 0


def check(ok, what):
    global bad
    print(("PASS" if ok else "FAIL"), f"{name}: {what}")
    bad += not ok
    return ok


records = [r for f in ledger_files(run_dir) for r in read_ledger(f)]
starts = [r for r in records if r["record"] == "run_start" and r.get("role") == "sampler"]
if not check(len(starts) == 1, f"one sampler ledger in {run_dir}/cost ({len(starts)} found)"):
    raise SystemExit(1)
start = starts[0]
check(start["backend"] == backend, f"sampler backend {start['backend']} (want {backend}; {start.get('backend_note')})")
s = summarize_run(run_dir)
billed = [g["uuid"] for g in s["gpus"]]
check(s["gpu_count"] == gpus and (gpus == 0 or billed == [uuid]), f"billed {billed} (want {gpus} GPU: {uuid})")
gpu_s, wall, ext = s["gpu_hours"] * 3600, s["wall_s"], t1 - t0
check(abs(gpu_s - wall * gpus) <= 0.01 * wall * gpus + 0.5,
      f"gpu_seconds {gpu_s:.1f} = ledger wall {wall:.1f} s x {gpus} GPU")
check(0.5 * ext * gpus <= gpu_s <= (1.02 * ext + 1) * gpus,
      f"gpu_seconds {gpu_s:.1f} within [0.5, 1.02] x command wall {ext:.1f} s x {gpus}")
if gpus == 0:
    raise SystemExit(1 if bad else 0)
energy = None if s["energy_kwh"] is None else s["energy_kwh"] * 3.6e6
sources = {g["energy_source"] for r in records if r["record"] == "interval" for g in r["gpus"]}
check(energy is not None and sources == {"counter"}, f"energy {energy} J from {sorted(sources)} (want the counter)")
if energy is None:
    raise SystemExit(1)
lines = [json.loads(x) for x in open(samples_path)]
limit = lines[0]["power_limit_w"]
pts = [p for p in lines[1:] if s["start_ts"] <= p["t"] <= s["end_ts"]]
if check(len(pts) >= 5, f"{len(pts)} NVML samples of this script's own inside the ledger's window"):
    mean_w = sum(p["power_w"] for p in pts) / len(pts)
    check(0.75 <= energy / (mean_w * gpu_s) <= 1.25,
          f"energy {energy:.0f} J vs sampled mean power {mean_w:.1f} W x {gpu_s:.1f} s = {mean_w * gpu_s:.0f} J (25 %)")
    rise = pts[-1]["energy_j"] - pts[0]["energy_j"]
    edge = max(p["power_w"] for p in pts) * ((pts[0]["t"] - s["start_ts"]) + (s["end_ts"] - pts[-1]["t"]))
    check(rise * 0.95 - 1 <= energy <= (rise + edge) * 1.05 + 1,
          f"energy {energy:.0f} J vs the NVML counter's rise {rise:.0f} J (+ up to {edge:.0f} J at the edges)")
check(0.8 * idle_w * gpu_s <= energy <= 1.05 * limit * gpu_s,
      f"mean power {energy / gpu_s:.1f} W within [0.8 x idle {idle_w:.1f} W, 1.05 x limit {limit:.0f} W]")
raise SystemExit(1 if bad else 0)
PY
}

idle_power() {  # idle_power SAMPLES: the lowest power in 3 s of polling before any work
    sampler "$1" "$2"
    sleep 3
    stop_sampler "$1"
    "$PY" -c 'import json,sys; print(min(json.loads(x)["power_w"] for x in list(open(sys.argv[1]))[1:]))' "$1"
}

secs() { awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }'; }

timed() {  # timed LOG TIMEOUT CMD...: run CMD, set T0/T1/RC
    local log="$1" limit="$2"; shift 2
    T0="$(date +%s.%N)"
    timeout "$limit" "$@" >"$log" 2>&1
    RC=$?
    T1="$(date +%s.%N)"
}

# ---- main -----------------------------------------------------------------------------------------------------
MODE=run WHEELS="" WORK="" PYVER="" HAVE=""
case "${1:-}" in
    --prepare) MODE=prepare; WHEELS="${2:?--prepare DIR}"; shift 2; while [ $# -gt 0 ]; do
                   case "$1" in --python) PYVER="${2:?--python X.Y}" ;; --have) HAVE="${2:?--have NAMES}" ;;
                                *) die "unknown option $1" ;; esac
                   shift 2
               done ;;
    --dry) MODE=dry; shift; while [ $# -gt 0 ]; do
               case "$1" in --wheels) WHEELS="${2:?--wheels DIR}"; shift 2 ;; *) WORK="$1"; shift ;; esac
           done ;;
    -h|--help|"") sed -n '2,19p' "$0"; exit 0 ;;
    *) WHEELS="$1"; WORK="${2:-}" ;;
esac
if [ "$MODE" = prepare ]; then
    prepare "$WHEELS" "$PYVER" "$HAVE"
    exit $FAILED
fi
WORK="${WORK:-$(mktemp -d /tmp/openrs-gpu-check.XXXXXX)}"
mkdir -p "$WORK" || die "cannot create $WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
say "work dir $WORK"

if [ "$MODE" = dry ]; then
    # CPU, fake NVML: every step, command and check of the GPU run, on a scripted 250 W GPU (limit 300 W).
    export OPENRS_NVML_BACKEND='fake:{"count": 1, "name": "NVIDIA H200", "power_w": 250.0}'
    UUID="GPU-fake-fake-0" BACKEND=fake TRAIN_GPUS=0 EVAL_GPUS=0  # CPU runs allocate no GPU: the probe bills one
    TRAIN_OVERRIDES=() EVAL_CVD=""
    if [ -n "$WHEELS" ]; then  # use the built openrs wheel, not the checkout (catches missing package data)
        "$PY" -m pip install -q --no-index --no-deps --target "$WORK/site" "$WHEELS"/openrs-*.whl \
            || die "cannot install the openrs wheel from $WHEELS"
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    cd "$WORK" || die "cannot enter $WORK"  # never import the checkout by accident
else
    [ -n "$WHEELS" ] && [ -d "$WHEELS" ] || die "usage: scripts/gpu_check.sh DIR [WORK] (DIR from --prepare)"
    WHEELS="$(cd "$WHEELS" && pwd)"
    cd "$WORK" || die "cannot enter $WORK"
    install "$WHEELS" "$WORK"
    export OPENRS_NVML_BACKEND=pynvml  # the real sampler, or a failure: never a silent wall-clock fallback
    UUID="$("$PY" -c 'import pynvml as n; n.nvmlInit(); print(n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(0)))')" \
        || die "NVML cannot read GPU 0"
    BACKEND=pynvml TRAIN_GPUS=1 EVAL_GPUS=1
    TRAIN_OVERRIDES=(launch.cpu=false launch.accelerate_config=ddp optim.bf16=true model.dtype=bfloat16)
    EVAL_CVD=0
fi
OPENRS=("$PY" -m openrs_cli.main)
say "GPU $UUID"

IDLE_W="$(idle_power "$WORK/idle.jsonl" "$UUID")" || die "cannot sample NVML power"
pass "idle power ${IDLE_W} W"

# Training: CUDA_VISIBLE_DEVICES by UUID (what issue 18 fixed; the plan passes it on to the rank).
sampler "$WORK/train.nvml.jsonl" "$UUID"
CUDA_VISIBLE_DEVICES="$UUID" timed "$WORK/train.log" 180 "${OPENRS[@]}" train tiny "${TRAIN_OVERRIDES[@]}" \
    --run-dir "$WORK/run"
stop_sampler "$WORK/train.nvml.jsonl"
if [ "$RC" = 0 ] && [ -d "$WORK/run/final" ]; then pass "openrs train tiny ($(secs) s)"
else tail -n 30 "$WORK/train.log"; fail "openrs train tiny exited $RC (log: $WORK/train.log)"; fi
check train "$WORK/run" "$WORK/train.nvml.jsonl" "$T0" "$T1" "$UUID" "$TRAIN_GPUS" "$BACKEND" "$IDLE_W"

# Evaluation: the trained model, transformers backend, CUDA_VISIBLE_DEVICES by index.
sampler "$WORK/eval.nvml.jsonl" "$UUID"
CUDA_VISIBLE_DEVICES="$EVAL_CVD" timed "$WORK/eval.log" 90 "${OPENRS[@]}" eval -m "$WORK/run/final" -t math_500 \
    --limit 16 --max-new-tokens 64 --backend transformers --out "$WORK/eval"
stop_sampler "$WORK/eval.nvml.jsonl"
if [ "$RC" = 0 ] && [ -f "$WORK/eval/results.json" ]; then pass "openrs eval ($(secs) s)"
else tail -n 30 "$WORK/eval.log"; fail "openrs eval exited $RC (log: $WORK/eval.log)"; fi
check eval "$WORK/eval" "$WORK/eval.nvml.jsonl" "$T0" "$T1" "$UUID" "$EVAL_GPUS" "$BACKEND" "$IDLE_W"

# A loaded GPU: open_monitor (as a library user calls it) around 15 s of bf16 matrix products; --dry: a 6 s sleep.
sampler "$WORK/probe.nvml.jsonl" "$UUID"
CUDA_VISIBLE_DEVICES="$UUID" timed "$WORK/probe.log" 60 "$PY" - "$WORK/probe" "$MODE" <<'PY'
import sys, time

from openrs_cli.cost import open_monitor

mon = open_monitor(sys.argv[1], kind="probe", gpu_indices=[0], interval_s=0.5, heartbeat_s=5)
if sys.argv[2] == "dry":
    time.sleep(6)
else:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.time() + 15
    while time.time() < end:
        for _ in range(10):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
mon.close()
PY
stop_sampler "$WORK/probe.nvml.jsonl"
if [ "$RC" = 0 ]; then pass "probe under load ($(secs) s)"; else tail -n 30 "$WORK/probe.log"; fail "probe exited $RC"; fi
check probe "$WORK/probe" "$WORK/probe.nvml.jsonl" "$T0" "$T1" "$UUID" 1 "$BACKEND" "$IDLE_W"

"${OPENRS[@]}" cost summary "$WORK/run" "$WORK/eval" "$WORK/probe" 2>&1 | sed "/^Paper Tables/,\$d"
if [ "$FAILED" = 0 ]; then say "PASS gpu_check ($MODE)"; else say "FAIL gpu_check ($MODE)"; fi
exit $FAILED
