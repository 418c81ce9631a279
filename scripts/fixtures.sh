#!/usr/bin/env bash
# Test data from the PyTorch reference (`npm run fixtures`). One script after another: they rewrite the same
# converted model dirs, so never in parallel.
#   build/fixtures/golden/<case>/   fixtures_vision.py, fixtures_text.py, fixtures_prompt_mask.py (native C++ tests)
#   build/fixtures/proposal/<case>/ fixtures_proposal.py (proposal head, NMS, dense captioning)
#   build/golden/<case>/            make_golden_models.py (pipeline / addon tests)
#   test/fixtures/reference/        fixtures_committed.py: the COMMITTED fixtures (tiny seeded model + outputs)
# Usage:
#   scripts/fixtures.sh                  all of the above; rewrites test/fixtures/reference in place
#   scripts/fixtures.sh --build-only     only the build/ fixtures (gitignored)
#   scripts/fixtures.sh --check          the build/ fixtures, then regenerate the committed set into a temporary
#                                        folder and fail on any difference with test/fixtures/reference
#   scripts/fixtures.sh --check-committed   only that comparison
# Needs the reference venv (engines/reference/setup_venv.sh; PYTHON overrides it) and ../shared/golden.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-engines/reference/.venv/bin/python}
S=engines/reference/scripts
build=1
committed=write
case "${1:-}" in
  "") ;;
  --build-only) committed=none ;;
  --check) committed=check ;;
  --check-committed) build=0; committed=check ;;
  *) echo "fixtures: unknown argument $1 (--build-only | --check | --check-committed)" >&2; exit 2 ;;
esac
[ -x "$PY" ] || { echo "fixtures: no python at $PY (run engines/reference/setup_venv.sh)" >&2; exit 1; }

run() {
  local t0=$SECONDS
  echo "-- $*"
  "$PY" "$@"
  echo "   ($((SECONDS - t0))s)"
}

if [ $build -eq 1 ]; then
  for s in fixtures_vision fixtures_text fixtures_prompt_mask fixtures_proposal make_golden_models; do
    run "$S/$s.py"
  done
fi
case $committed in
  write) run "$S/fixtures_committed.py" ;;
  check) run "$S/fixtures_committed.py" --check ;;
esac
