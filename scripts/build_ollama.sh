#!/usr/bin/env bash
# Provide a real `ollama` binary for the real-Ollama and Docker test tiers.
#
# Builds the pinned release from the Go module proxy (the only source these machines reach) into a
# stable cache directory, reusing Go's build and module caches so a second run takes seconds.
# Prints the binary's path on stdout; everything else goes to stderr.
set -euo pipefail

OLLAMA_VERSION="${PRELOADER_OLLAMA_VERSION:-0.11.4}"
CACHE_ROOT="${PRELOADER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-preloader}"
DEST="$CACHE_ROOT/ollama-v$OLLAMA_VERSION"
BIN="$DEST/bin/ollama"

log() { printf 'build_ollama: %s\n' "$*" >&2; }

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
  printf '%s\n' "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed or not on PATH; install Go >= 1.24 (e.g. apt-get install golang) and re-run"
  exit 1
fi
if ! command -v gcc >/dev/null 2>&1 && ! command -v cc >/dev/null 2>&1; then
  log "a C compiler is required (Ollama's CPU backend is built with cgo): apt-get install build-essential"
  exit 1
fi

log "building ollama v$OLLAMA_VERSION into $DEST (first run takes several minutes)"
mkdir -p "$DEST"
start=$SECONDS
CGO_ENABLED=1 GOBIN="$DEST/bin" GOFLAGS=-mod=mod go install -trimpath \
  -ldflags "-X github.com/ollama/ollama/version.Version=$OLLAMA_VERSION -X github.com/ollama/ollama/server.mode=release" \
  "github.com/ollama/ollama@v$OLLAMA_VERSION" >&2
log "built in $((SECONDS - start)) s"
printf '%s\n' "$BIN"
