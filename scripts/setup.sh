#!/usr/bin/env bash
# Set up cardiac_mi on a Debian/Ubuntu machine: Debian packages, a Python 3.11 venv in .venv with
# the pinned requirements, and the project installed in it. Safe to run again: it only does what
# is missing (requirements are installed again, in place, when requirements.txt changes).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the product and its tests need, listed in scripts/apt-packages.txt; Python 3.11
# with venv support too, unless one is already there (Debian's, pyenv's or a source build).
packages=()
python3.11 -c 'import ensurepip' 2>/dev/null || packages+=(python3.11 python3.11-venv)
while read -r pkg; do packages+=("$pkg"); done < <(grep -Ev '^(#|$)' scripts/apt-packages.txt || true)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # cardiac_mi starts its own Orthanc on loopback; Debian's system service would listen on the
  # network (DICOM 4242, HTTP 8042 without a password), so it is switched off.
  # PostgreSQL is there for the Docker files' checks only, which start their own throwaway cluster.
  for service in orthanc postgresql; do
    if command -v systemctl >/dev/null && systemctl list-unit-files "$service.service" >/dev/null 2>&1; then
      $SUDO systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    fi
  done
fi
PYTHON=python3.11

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt build-constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
# Install in place when the requirements change: never delete a venv that may be in use.
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements into .venv (a few minutes the first time)"
  PIP_CONSTRAINT="$PWD/build-constraints.txt" SAM2_BUILD_CUDA=0 \
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  .venv/bin/pip check
  echo "$want" > "$stamp"
fi

# check-jsonschema checks docker/docker-compose.yml against the Compose Specification; it needs a newer
# jsonschema than pydicom-seg (a MONAI Label import) allows, so it gets a venv of its own.
if [ ! -x .venv/tools/bin/check-jsonschema ]; then
  "$PYTHON" -m venv .venv/tools
  .venv/tools/bin/pip install --quiet --disable-pip-version-check check-jsonschema==0.39.0
  ln -sf ../tools/bin/check-jsonschema .venv/bin/check-jsonschema
fi
