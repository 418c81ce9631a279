#!/usr/bin/env bash
# One command: create engines/reference/.venv with the pinned reference dependencies, from the local wheel indexes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PIXELLLM_VENV:-$here/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then "$py" -m venv "$venv"; fi
# pip on these machines is configured (pip config list) with local wheel indexes as extra indexes; pointing
# --index-url at the first of them keeps pip from waiting on the unreachable default registry.
"$venv/bin/pip" install -q --disable-pip-version-check --index-url "${PIXELLLM_PIP_INDEX:-file:///opt/pypi/simple}" \
  -r "$here/requirements.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation --no-index -e "$here" 2>/dev/null \
  || true
echo "venv ready: $venv"
