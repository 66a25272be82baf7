#!/usr/bin/env bash
# Build real `ollama` servers for the real-Ollama and Docker test tiers, from package registries only.
#
#   scripts/build_ollama.sh                 build every supported version
#   scripts/build_ollama.sh 0.32.15 ...     build only these (each must be supported)
#   scripts/build_ollama.sh --list          print the supported versions, one per line
#
# Prints one absolute binary path per version on stdout, in the order asked; logs go to stderr. Exits
# non-zero if any build failed (the others are still built and printed).
#
# Each version is installed under $CACHE_ROOT/ollama-v<VERSION>/: bin/ollama, and for 0.30+ lib/ollama/
# (llama-server, llama-quantize and their libraries; Ollama looks for them at <binary dir>/../lib/ollama).
# BUILD_INFO there says which llama.cpp the build used and is written last, so a second run that finds
# it (and a binary answering --version with the right version) returns in well under a second.
#
# Environment:
#   PRELOADER_CACHE_DIR       cache root (default ${XDG_CACHE_HOME:-~/.cache}/ollama-preloader); the Go
#                             caches, sources and CMake build directories live under it too
#   PRELOADER_OLLAMA_VERSION  build only this version when no version is given as an argument
set -euo pipefail

# The one place versions are pinned. Older releases compile their engine into the Go binary with cgo;
# 0.30 and later run llama.cpp's llama-server, which must be built from a llama.cpp source. Ollama's
# CMake fetches its pinned tag from GitHub, unreachable here, so the source is the git bundle that the npm
# package node-llama-cpp ships: the nearest release whose Ollama compat patches still apply.
SUPPORTED_VERSIONS=(0.11.4 0.32.15)
declare -A LLAMA_CPP_NPM=(
  [0.32.15]=node-llama-cpp@3.20.0 # llama.cpp b10361; Ollama 0.32.15 pins b10488 (3.21.1 fails its patch)
)

CACHE_ROOT="${PRELOADER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-preloader}"
SRC_ROOT="$CACHE_ROOT/src"
BUILD_ROOT="$CACHE_ROOT/build"
# Stable Go caches: a rebuild after an interrupted or wiped install recompiles nothing it already did.
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOCACHE="$CACHE_ROOT/go/build"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=1

log() { printf 'build_ollama: %s\n' "$*" >&2; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

is_supported() {
  local v
  for v in "${SUPPORTED_VERSIONS[@]}"; do [[ "$v" == "$1" ]] && return 0; done
  return 1
}

# 0.30 and later need the llama.cpp build; the pin table above says which versions those are.
needs_llama_cpp() { [[ -n "${LLAMA_CPP_NPM[$1]:-}" ]]; }

# Each missing tool is named with the Debian package that provides it, all at once.
check_tools() {
  local version=$1 missing=()
  # Go 1.21+ fetches the newer toolchain a module's go.mod asks for (1.26 for 0.32.15) from the module
  # proxy by itself; older Go cannot, and Debian bookworm's golang-go is 1.19.
  local go_minor
  go_minor="$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
  if [[ -z "$go_minor" ]] || ((go_minor < 21)); then
    missing+=("Go >= 1.21 (found: $(go env GOVERSION 2>/dev/null || echo none); go.dev/dl, not bookworm's golang-go 1.19)")
  fi
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=("cc (apt-get install build-essential)")
  command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=("c++ (apt-get install build-essential)")
  if needs_llama_cpp "$version"; then
    command -v cmake >/dev/null 2>&1 || missing+=("cmake >= 3.24 (apt-get install cmake)")
    command -v ninja >/dev/null 2>&1 || missing+=("ninja (apt-get install ninja-build)")
    command -v npm >/dev/null 2>&1 || missing+=("npm (apt-get install npm)")
    command -v git >/dev/null 2>&1 || missing+=("git (apt-get install git)")
  fi
  if ((${#missing[@]})); then
    log "ollama v$version cannot be built; install what is missing and re-run:"
    printf '  - %s\n' "${missing[@]}" >&2
    return 1
  fi
}

# True when DEST holds a finished build of VERSION. The marker is written last; the version check
# also catches a binary built without the -ldflags (it reports 0.0.0). OLLAMA_HOST points at a port
# nothing listens on, so --version never talks to (or waits for) a server someone else runs.
is_built() {
  local version=$1 dest=$2
  [[ -f "$dest/BUILD_INFO" ]] && grep -qx "version=$version" "$dest/BUILD_INFO" || return 1
  [[ -x "$dest/bin/ollama" ]] || return 1
  if needs_llama_cpp "$version"; then
    [[ -x "$dest/lib/ollama/llama-server" && -x "$dest/lib/ollama/llama-quantize" ]] || return 1
  fi
  OLLAMA_HOST=127.0.0.1:1 timeout 10 "$dest/bin/ollama" --version 2>&1 | grep -q "version is $version\$"
}

ldflags() {
  printf '%s' "-X github.com/ollama/ollama/version.Version=$1 -X github.com/ollama/ollama/server.mode=release"
}

build_cgo() {
  local version=$1 dest=$2
  mkdir -p "$dest/bin"
  GOBIN="$dest/bin" go install -trimpath -ldflags "$(ldflags "$version")" \
    "github.com/ollama/ollama@v$version" >&2
  printf 'version=%s\nllama_cpp=vendored in the Go module (compiled with cgo)\n' "$version" >"$dest/BUILD_INFO"
}

# A writable copy of the Go module (the module cache is read-only, and CMake patches nothing here but
# the build reads files outside any Go package, such as LLAMA_CPP_VERSION).
module_copy() {
  local version=$1 dir="$SRC_ROOT/ollama-v$1"
  if [[ ! -f "$dir/.complete" ]]; then
    local mod_dir
    mod_dir="$(cd "$SRC_ROOT" && go mod download -json "github.com/ollama/ollama@v$version" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$mod_dir" ]] || { log "go mod download gave no directory for ollama v$version"; return 1; }
    rm -rf "$dir"
    cp -r "$mod_dir" "$dir"
    chmod -R u+w "$dir"
    touch "$dir/.complete"
  fi
  printf '%s\n' "$dir"
}

# Prints "<tag> <clone dir>" for the llama.cpp release inside the npm package SPEC. The clone is per
# Ollama version because Ollama's CMake patches it in place (idempotently: applied patches are skipped).
llama_cpp_source() {
  local version=$1 spec=$2
  local name=${spec%@*} npm_version=${spec##*@}
  local tgz="$SRC_ROOT/$name-$npm_version.tgz" unpacked="$SRC_ROOT/$name-$npm_version"
  if [[ ! -f "$tgz" ]]; then
    log "fetching $spec from npm (about 35 MB)"
    (cd "$SRC_ROOT" && npm pack --silent "$spec" >/dev/null) || { log "npm pack $spec failed"; return 1; }
  fi
  if [[ ! -f "$unpacked/llama.cpp.info.json" ]]; then
    rm -rf "$unpacked"
    mkdir -p "$unpacked"
    tar -xzf "$tgz" -C "$unpacked" --strip-components=2 \
      package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  fi
  local tag
  tag="$(sed -n 's/^[[:space:]]*"tag": "\([^"]*\)".*/\1/p' "$unpacked/llama.cpp.info.json")"
  [[ -n "$tag" ]] || { log "no llama.cpp tag in $unpacked/llama.cpp.info.json"; return 1; }
  local clone="$BUILD_ROOT/ollama-v$version/llama.cpp-$tag"
  if [[ ! -d "$clone/.git" ]]; then
    rm -rf "$clone"
    git -c advice.detachedHead=false clone --quiet "$unpacked/gitRelease.bundle" "$clone" >&2
  fi
  printf '%s %s\n' "$tag" "$clone"
}

build_with_llama_server() {
  local version=$1 dest=$2 spec=${LLAMA_CPP_NPM[$1]}
  local src tag clone pinned
  src="$(module_copy "$version")"
  read -r tag clone < <(llama_cpp_source "$version" "$spec")
  [[ -n "${clone:-}" ]] || return 1
  pinned="$(tr -d '[:space:]' <"$src/LLAMA_CPP_VERSION")"
  log "ollama v$version: llama.cpp $tag from $spec (Ollama pins $pinned, unreachable offline)"
  local build="$BUILD_ROOT/ollama-v$version/cmake"
  # One CPU variant with the common x86-64 extensions keeps the build to minutes; GGML_NATIVE is
  # refused together with GGML_BACKEND_DL. FULLY_DISCONNECTED stops FetchContent reaching GitHub.
  cmake -S "$src/llama/server" -B "$build" -G Ninja \
    -DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP="$clone" -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_OPENMP=OFF -DOLLAMA_RUNNER_DIR= -DCMAKE_INSTALL_PREFIX="$dest" >&2
  # All targets, not just llama-server: /api/create runs llama-quantize.
  cmake --build "$build" >&2
  cmake --install "$build" >&2
  [[ -x "$dest/lib/ollama/llama-quantize" ]] ||
    { log "llama-quantize missing from $dest/lib/ollama after install"; return 1; }
  mkdir -p "$dest/bin"
  (cd "$src" && go build -trimpath -ldflags "$(ldflags "$version")" -o "$dest/bin/ollama" .) >&2
  printf 'version=%s\nllama_cpp_tag=%s\nllama_cpp_source=npm:%s gitRelease.bundle\nllama_cpp_pinned_by_ollama=%s\n' \
    "$version" "$tag" "$spec" "$pinned" >"$dest/BUILD_INFO"
}

# A cgo-era binary installed without BUILD_INFO (by this script's earlier single-version form) is
# complete if it reports the right version: record it instead of recompiling it under a running user.
adopt_unmarked() {
  local version=$1 dest=$2
  ! needs_llama_cpp "$version" && [[ ! -f "$dest/BUILD_INFO" && -x "$dest/bin/ollama" ]] || return 1
  OLLAMA_HOST=127.0.0.1:1 timeout 10 "$dest/bin/ollama" --version 2>&1 | grep -q "version is $version\$" ||
    return 1
  printf 'version=%s\nllama_cpp=vendored in the Go module (compiled with cgo)\n' "$version" >"$dest/BUILD_INFO"
  log "ollama v$version: adopted the existing binary in $dest"
}

# Builds VERSION unless already built; prints its binary path.
build_one() {
  local version=$1 dest="$CACHE_ROOT/ollama-v$1"
  mkdir -p "$CACHE_ROOT"
  # Two callers (test.sh --setup and a test fixture, say) must not build into the same directory at
  # once: the second waits for the first, then finds its result.
  local lock_fd
  exec {lock_fd}>"$CACHE_ROOT/ollama-v$version.lock"
  if ! flock -n "$lock_fd"; then
    log "ollama v$version: another build holds $CACHE_ROOT/ollama-v$version.lock; waiting (up to 1 h)"
    flock -w 3600 "$lock_fd" || { log "ollama v$version: lock still held after 1 h"; return 1; }
  fi
  if is_built "$version" "$dest" || adopt_unmarked "$version" "$dest"; then
    log "ollama v$version already built: $dest ($(grep -E '^llama_cpp' "$dest/BUILD_INFO" | head -1))"
    printf '%s\n' "$dest/bin/ollama"
    return 0
  fi
  check_tools "$version" || return 1
  log "building ollama v$version into $dest (cold: several minutes on 2 cores)"
  # A half-finished install must never look finished: start from an empty directory.
  rm -rf "$dest"
  mkdir -p "$dest" "$SRC_ROOT" "$BUILD_ROOT"
  local start=$SECONDS
  if needs_llama_cpp "$version"; then
    build_with_llama_server "$version" "$dest" || return 1
  else
    build_cgo "$version" "$dest" || return 1
  fi
  is_built "$version" "$dest" || { log "ollama v$version built but fails its check in $dest"; return 1; }
  log "built ollama v$version in $((SECONDS - start)) s ($(grep -E '^llama_cpp' "$dest/BUILD_INFO" | head -1))"
  printf '%s\n' "$dest/bin/ollama"
}

main() {
  local versions=()
  case "${1:-}" in
    --list) printf '%s\n' "${SUPPORTED_VERSIONS[@]}"; return 0 ;;
    -h | --help) usage; return 0 ;;
    -*) log "unknown option '$1' (use --list or --help)"; return 2 ;;
  esac
  if (($#)); then
    versions=("$@")
  elif [[ -n "${PRELOADER_OLLAMA_VERSION:-}" ]]; then
    versions=("$PRELOADER_OLLAMA_VERSION")
  else
    versions=("${SUPPORTED_VERSIONS[@]}")
  fi
  local v
  for v in "${versions[@]}"; do
    is_supported "$v" || {
      log "ollama v$v is not supported; supported: ${SUPPORTED_VERSIONS[*]} (pinned at the top of $0)"
      return 2
    }
  done
  local failed=()
  for v in "${versions[@]}"; do
    # A subshell run outside any `if`/`||` (where bash would ignore `set -e`): its first failing step
    # ends this version's build, and the loop goes on to the next version.
    set +e
    (set -e; build_one "$v")
    local status=$?
    set -e
    if ((status != 0)); then
      log "ollama v$v: build FAILED (see above)"
      failed+=("$v")
    fi
  done
  if ((${#failed[@]})); then
    log "failed: ${failed[*]}"
    return 1
  fi
}

main "$@"
