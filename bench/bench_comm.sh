#!/usr/bin/env bash
# Weak scaling of the CPU training step: bench_comm on 1 rank, then under mpirun on N
# ranks (default 2), one thread each; efficiency = step time on 1 rank / step time on N
# (1.0 is perfect: N times the tokens in the same time). Writes bench_comm_1.json,
# bench_comm_N.json and bench_comm.json (the summary) into the current directory.
# Usage: bench/bench_comm.sh BUILD_DIR [N]
set -euo pipefail
build=${1:?usage: bench_comm.sh BUILD_DIR [N]}
n=${2:-2}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 QG_THREADS=1
# as root OpenMPI needs these; more ranks than cores need oversubscription
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
"$build/bench_comm" bench_comm_1.json
mpirun -np "$n" "$build/bench_comm" "bench_comm_$n.json"
python3 - "$n" <<'PY'
import json, sys
n = int(sys.argv[1])
one = json.load(open("bench_comm_1.json"))
many = json.load(open(f"bench_comm_{n}.json"))
eff = one["step_seconds_median"] / many["step_seconds_median"]
# the spread: best and worst pairing of the two runs' step ranges
lo = one["step_seconds_min"] / many["step_seconds_max"]
hi = one["step_seconds_max"] / many["step_seconds_min"]
out = {"ranks": n, "threads_per_rank": 1,
       "step_seconds_1": one["step_seconds_median"], f"step_seconds_{n}": many["step_seconds_median"],
       "weak_scaling_efficiency": eff, "efficiency_range_from_step_extremes": [lo, hi],
       f"comm_seconds_{n}": many["comm_seconds_median"],
       "comm_share": many["comm_seconds_median"] / many["step_seconds_median"]}
json.dump(out, open("bench_comm.json", "w"), indent=1)
print(f"weak scaling {n} ranks x 1 thread vs 1 x 1: efficiency {eff:.3f} (range {lo:.3f}..{hi:.3f} from the "
      f"steps' extremes); {100*out['comm_share']:.1f}% of the {n}-rank step inside collectives")
PY
