#!/usr/bin/env bash
# Create or reuse .venv in the repository root and install whatever is missing:
# Debian packages for headless MuJoCo rendering (EGL), then the Python package with its extras.
# Idempotent and quick when nothing changed (a hash of pyproject.toml is stamped into .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# --- Debian packages: EGL + Mesa for MUJOCO_GL=egl, ffmpeg comes with imageio-ffmpeg -----------------
need_apt=()
for lib in libEGL.so.1 libEGL_mesa.so.0 libGL.so.1; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || need_apt=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri)
done
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "[setup] installing Debian packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- Python virtual environment ------------------------------------------------------------------------
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do command -v "$cand" >/dev/null && { py="$cand"; break; }; done
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $py"
  "$py" -m venv .venv
fi
stamp=".venv/.wm_planning_stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing wm-planning and its dependencies into .venv"
  # Some machines' pip configs list local package folders that may not exist; pip warns once per
  # package about each. Drop those lines, keep everything else (pipefail keeps pip's status).
  pip_install() {
    .venv/bin/python -m pip install -q "$@" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  }
  pip_install --upgrade pip
  # torch is pinned in pyproject; installing it first from its pin keeps pip from resolving another build.
  pip_install "torch==2.13.0"
  pip_install -e ".[dev,bench,ros]"
  echo "$want" > "$stamp"
fi
