#!/usr/bin/env bash
# The reliability suite (issue 3) with the CI figures: corruption sweeps, kill -9 cycles
# of a single log and of a store of topics, a full disk, real power cuts on ext4 and xfs
# loop devices (and a store of 8 topics on ext4), the model state machine, and each fuzz
# target for a bounded number of runs when a nightly toolchain exists.
#
# Knobs (defaults are the CI figures): RINGLOG_POWERCUTS (200 per filesystem, and for the
# store), RINGLOG_KILL9_CYCLES (100), RINGLOG_STORE_KILL9_CYCLES (100),
# RINGLOG_KILL9_CUT_CYCLES (100), RINGLOG_CRASH_VARIANTS (12 crash states per operation of
# each cut), RINGLOG_MODEL_CASES (600), RINGLOG_FUZZ_RUNS (1000000 per
# target; the frame target does 10x), RINGLOG_SHUTTLE_ITERATIONS (1000 schedules per
# scenario of the model-checked group commit), RINGLOG_FUZZ_MAX_SECONDS (per target, 400),
# RINGLOG_SEED (replays the randomized tests). A longer run by hand, e.g.:
#   RINGLOG_POWERCUTS=2000 RINGLOG_KILL9_CYCLES=1000 RINGLOG_STORE_KILL9_CYCLES=1000 \
#     RINGLOG_FUZZ_RUNS=100000000 \
#     RINGLOG_FUZZ_MAX_SECONDS=3600 bash .ci/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
export RINGLOG_POWERCUTS="${RINGLOG_POWERCUTS:-200}"
export RINGLOG_KILL9_CYCLES="${RINGLOG_KILL9_CYCLES:-100}"
export RINGLOG_STORE_KILL9_CYCLES="${RINGLOG_STORE_KILL9_CYCLES:-100}"
export RINGLOG_KILL9_CUT_CYCLES="${RINGLOG_KILL9_CUT_CYCLES:-100}"
export RINGLOG_CRASH_VARIANTS="${RINGLOG_CRASH_VARIANTS:-12}"
export RINGLOG_MODEL_CASES="${RINGLOG_MODEL_CASES:-600}"
export RINGLOG_SHUTTLE_ITERATIONS="${RINGLOG_SHUTTLE_ITERATIONS:-1000}"
FUZZ_RUNS="${RINGLOG_FUZZ_RUNS:-1000000}"
FUZZ_MAX_SECONDS="${RINGLOG_FUZZ_MAX_SECONDS:-400}"

started=$SECONDS
step() { echo "== [$((SECONDS - started)) s] $*"; }

# What the power-cut and ENOSPC tests need (they run as root, and say SKIP otherwise).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! command -v mkfs.xfs >/dev/null 2>&1 || ! command -v mkfs.ext4 >/dev/null 2>&1 \
    || ! command -v losetup >/dev/null 2>&1; then
    step "apt-get install xfsprogs util-linux e2fsprogs"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs util-linux e2fsprogs \
      >/dev/null 2>&1 || echo "reliability: apt-get install failed; the tests say what they skip"
  fi
fi

step "reliability tests (power cuts ${RINGLOG_POWERCUTS}/fs, for a store and with trims and truncations, kill -9 ${RINGLOG_KILL9_CYCLES}, ${RINGLOG_STORE_KILL9_CYCLES} of a store and ${RINGLOG_KILL9_CUT_CYCLES} with trims and truncations, cut crash states ${RINGLOG_CRASH_VARIANTS} per point, model ${RINGLOG_MODEL_CASES} cases)"
# Measured on 2 cores: the store kill -9 cycles take ~45 s at 100 cycles, the store power
# cuts 90-160 s at 200 (beside the other power-cut tests, in parallel with them); the
# trim/truncate power cuts ~30 s at 200, their kill -9 cycles ~10 s at 100.
cargo test --test corruption --test kill9 --test store_kill9 --test kill9_cut --test enospc \
  --test powercut --test crash_cut --test model -- --nocapture

step "group commit under the shuttle model checker (${RINGLOG_SHUTTLE_ITERATIONS} schedules per scenario)"
# Its own build: every lock, atomic and thread of the engine is shuttle's (src/sync.rs).
RUSTFLAGS="--cfg ringlog_shuttle" CARGO_TARGET_DIR=target/shuttle \
  cargo test --release --test shuttle -- --nocapture --test-threads 1

step "fuzzing"
if cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    step "cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked >/dev/null 2>&1 || true
  fi
  if cargo +nightly fuzz --version >/dev/null 2>&1; then
    # No sanitizer: the decoders under test are safe Rust, and it runs 2-3x faster.
    cargo +nightly fuzz build -O -s none
    for target in frame scan index entry; do
      runs=$FUZZ_RUNS
      [ "$target" = frame ] && runs=$((FUZZ_RUNS * 10))
      step "fuzz $target: up to $runs runs or $FUZZ_MAX_SECONDS s"
      log=$(mktemp)
      if ! cargo +nightly fuzz run -O -s none "$target" -- \
        -runs="$runs" -max_total_time="$FUZZ_MAX_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "reliability: fuzz target $target FAILED (the input is in fuzz/artifacts/$target)"
        exit 1
      fi
      done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)
      echo "fuzz $target: ${done_line:-finished}, 0 crashes"
      rm -f "$log"
    done
  else
    echo "reliability: SKIP fuzzing: cargo-fuzz is not installed and could not be installed"
  fi
else
  echo "reliability: SKIP fuzzing: no nightly toolchain (cargo +nightly)"
fi

step "reliability suite done in $((SECONDS - started)) s"
