#!/usr/bin/env bash
# One session's step of the BSDS300 chain (bench/results/BSDS300.md, "How the figure moved"):
# continue the last published network on its rows plus fresh patches with truncated EM,
# publish the result, then score it averaged over the 8 symmetries. Logs go to
# bench/results/logs/ (bench/out is each machine's scratch). Run it in the background at the
# start of a session (setsid and </dev/null: session 31's plain `nohup ... &` never started):
#
#   setsid nohup bash bench/experiments/chain_step.sh bsds300-800x5x5-44m bsds300-800x5x5-48m \
#       4000000lr 3 40 > /tmp/chain.out 2>&1 < /dev/null &
#
# (session 36's plan: the 44M file on its 43.8M rows, started from their last paths in session
# 35's checkpoint where this machine still has it, plus 4M more draws seen through the
# left-right mirror (a second mirrored stage, its own stream: bench/results/BSDS300.md,
# footnotes 36-37), started by the node search, 3 truncated iterations: about 2 h by session
# 35's timings (5,759 s at 43.8M rows with 1-thread jobs beside the second E-step, then 15
# min of symmetrize), about 22 GB (21.1 GB resident at most at 43.8M rows, +0.9 per 4M rows,
# of 24.7). Without the checkpoint the old rows' starts add about 40 min: take 2000000lr.)
#
# FROM and TO name bench/models/bsds300-600x5x5-{FROM,TO}.npz (a name starting with bsds300- is
# a file stem: bsds300-800x5x5-36m); FRESH new train-image patches (0: none, iterations only;
# 4000000lr: 4M draws seen through the left-right mirror, --mirrored);
# ITERS truncated iterations, or H+S for H hard ones before S truncated ones (sessions 28-32, 2
# threads: about 50 s per 1M rows where a truncated iteration ranks, 28 s where it reuses the
# ranking; at 800 top nodes, sessions 33-34, 58 and 30 s; 18.6 GB resident at 35.8M rows, 20.2 at
# 39.8M reusing paths, 21.1 at 43.8M; symmetrize 12 min, 15 at 800 top nodes). START_KEEP
# (optional, default 0: every row from its exact best path, 162-166 s per 1M rows) starts each row
# from its best path under its START_KEEP most likely top-layer nodes instead (--start-keep; 40:
# the exact path for 98.5% of rows, 46-51 s per 1M rows; sessions 31-32, bench/results/BSDS300.md,
# footnotes 33-34). Unless WIDEN_TO is given, the file's own rows start from their last paths in
# the checkpoint of the run that wrote it (--reuse-paths: better starts than the node search's, and
# free) when bench/out/continued still holds it, as it does on the machine that ran the last step;
# then only the fresh rows are searched. WIDEN_TO (optional, e.g. 800,5,5) first splits the
# heaviest nodes up to those layer sizes (--widen-to): a hard iteration (ITERS 1+S) parts each
# split node from its copy at once, truncated soft EM over a few iterations. Afterwards: commit
# bench/results/bsds300.json, the logs and the model file, and add the rows to Table 1 in
# bench/results/BSDS300.md (and the summary in README.md) and bench/models/README.md.
set -euo pipefail
if [ $# -lt 4 ] || [ $# -gt 6 ]; then
    echo "usage: $0 FROM TO FRESH ITERS [START_KEEP [WIDEN_TO]]   (e.g. 22m 26m 4000000 3)" >&2
    exit 2
fi
from=$1 to=$2 fresh=$3 iters=$4 start_keep=${5:-0} widen_to=${6:-}
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
# as every chain run so far: glibc keeps freed memory instead of unmapping it and mapping it
# afresh for every block of rows
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
mkdir -p bench/results/logs
model_file() {  # 32m: the (600, 5, 5) chain's file; bsds300-...: a file stem
    case $1 in
        bsds300-*) echo "bench/models/$1.npz" ;;
        *) echo "bench/models/bsds300-600x5x5-$1.npz" ;;
    esac
}
extra_args=()
if [[ $fresh == *lr ]]; then  # 4000000lr: the fresh draws seen through the left-right mirror
    extra_args=(--mirrored)
    fresh=${fresh%lr}
fi
if [ "$fresh" != 0 ]; then
    extra_args+=(--add-fresh "$fresh")
fi
if [[ $iters == *+* ]]; then
    extra_args+=(--iters "${iters%%+*}")
    iters=${iters#*+}
fi
if [ -n "$widen_to" ]; then
    extra_args+=(--widen-to "$widen_to")
else  # the file's rows from their last paths, when this machine still has its run's checkpoint
    extra_args+=(--reuse-paths)
fi
python bench/experiments/continue_network.py continue \
    --model "$(model_file "$from")" "${extra_args[@]}" \
    --soft-iters "$iters" --truncation 20 --no-search --rerank-every 3 --threads 2 \
    --start-keep "$start_keep" \
    --publish "$(model_file "$to")" > "bench/results/logs/cont$to.log" 2>&1
python bench/experiments/continue_network.py symmetrize \
    --model "$(model_file "$to")" --score-float32 --threads 2 \
    > "bench/results/logs/sym$to.log" 2>&1
