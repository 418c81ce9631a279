#!/usr/bin/env bash
# Runs the libFuzzer harnesses (fuzz/*_fuzzer.cc) after building them with fuzz/build.sh.
#   scripts/fuzz.sh --smoke              60 s in all (20 s per harness), the CI step
#   scripts/fuzz.sh --time 600 [NAME..]  NAME = safetensors | config | rle (default: all), one after another
#   scripts/fuzz.sh --fork 2 --time 600 NAME   libFuzzer -fork=2 (parallel jobs, keeps going after a crash)
# Each run starts from the committed seeds (fuzz/corpus/NAME) plus what earlier runs found (build/fuzz/corpus/NAME,
# not committed), with the dictionary fuzz/NAME.dict when there is one; crashing inputs go to
# build/fuzz/artifacts/NAME/. Runs under `nice -n 10`. Prints, per harness, the executions, exec/s and the verdict;
# exits non-zero when any harness found something.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

secs=""
fork=0
names=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) secs=20 ;;
    --time) secs=$2; shift ;;
    --fork) fork=$2; shift ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) names+=("$1") ;;
  esac
  shift
done
[[ -n "$secs" ]] || { echo "scripts/fuzz.sh: pass --smoke or --time SECONDS" >&2; exit 2; }
[[ ${#names[@]} -gt 0 ]] || names=(safetensors config rle)

bash fuzz/build.sh >/dev/null
B=$ROOT/build/fuzz
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for n in "${names[@]}"; do
  bin=$B/${n}_fuzzer
  [[ -x "$bin" ]] || { echo "no harness $n" >&2; exit 2; }
  mkdir -p "$B/corpus/$n" "$B/artifacts/$n"
  args=(-max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$B/artifacts/$n/")
  [[ -f fuzz/$n.dict ]] && args+=(-dict="fuzz/$n.dict")
  [[ $fork -gt 0 ]] && args+=(-fork="$fork" -ignore_crashes=1)
  log=$B/$n.log
  before=$(find "$B/artifacts/$n" -maxdepth 1 -type f | wc -l)
  t0=$SECONDS
  rc=0
  nice -n 10 "$bin" "${args[@]}" "$B/corpus/$n" "fuzz/corpus/$n" >"$log" 2>&1 || rc=$?
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  [[ -n "$execs" ]] || execs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  rate=$(grep -Eo 'exec/s: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
  crashes=$(( $(find "$B/artifacts/$n" -maxdepth 1 -type f | wc -l) - before ))
  if [[ $rc -ne 0 || ( $fork -gt 0 && $crashes -gt 0 ) ]]; then
    status=1
    echo "fuzz $n: FOUND SOMETHING after $((SECONDS - t0))s (rc $rc), see $log and $B/artifacts/$n/"
    grep -E 'FUZZ FINDING|ERROR: |runtime error|SUMMARY' "$log" | head -5 || true
  else
    echo "fuzz $n: clean, ${execs:-?} executions in $((SECONDS - t0))s (${rate:-?} exec/s, cov ${cov:-?})"
  fi
done
exit $status
