#!/usr/bin/env bash
# Prepare the kubernetes test tier on a Debian machine that reaches package registries only.
#
#   scripts/prepare_kubernetes.sh           build the tools, start etcd + kube-apiserver on loopback and a
#                                           single-node cluster (containerd, kubelet, controllers, scheduler,
#                                           CoreDNS) on a bridge of its own; import the test images.
#                                           Prints KEY=VALUE lines on stdout (what the tests read).
#   scripts/prepare_kubernetes.sh --tools   only build/install the tools (helm, kubeconform, schemas, kubectl,
#                                           kubernetes-validate): enough for the static tests
#   scripts/prepare_kubernetes.sh --stop    stop what this script started (by recorded pid), remove its
#                                           bridge and iptables rules, unmount the kubelet's mounts
#
# Every step is skipped when its result exists, so a second run takes seconds. Nothing listens beyond
# loopback and the bridge below; no address outside this machine is ever contacted (images are imported
# from the local Docker engine, never pulled).
#
# Environment:
#   PRELOADER_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-~/.cache}/ollama-preloader); everything lives
#                         under <root>/kubernetes/, the Go caches under <root>/go/ (shared with build_ollama.sh)
#   PYTHON                interpreter used to create the tools' venv (default python3)
set -euo pipefail


# The one place versions are pinned; they are the set that worked together here (see the chart README).
K8S_VERSION=1.37.2
HELM_VERSION=3.22.0
KUBECONFORM_VERSION=0.8.0
COREDNS_VERSION=1.15.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# The schema sets kubeconform and kubernetes-validate check against: the oldest release the chart
# supports (native sidecars are on by default from 1.29) and the newest kubernetes-validate ships.
SCHEMA_K8S_VERSIONS="1.29.0 1.37.0"
OLLAMA_IMAGE="${PRELOADER_OLLAMA_IMAGE:-preloader-standin/ollama:0.32.15}"
PAUSE_IMAGE=preloader-standin/pause:1

CACHE_ROOT="${PRELOADER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-preloader}"
K_ROOT="$CACHE_ROOT/kubernetes"
BIN="$K_ROOT/bin"
VENV="$K_ROOT/venv"
SRC="$K_ROOT/src"
RUN="$K_ROOT/run"
LOGS="$RUN/logs"
PIDS="$RUN/pids"
PKI="$RUN/pki"
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOCACHE="$CACHE_ROOT/go/build"
export GOFLAGS="-mod=mod -buildvcs=false"
PYTHON="${PYTHON:-python3}"

# Network: loopback for the control plane; one bridge for the Pods, whose gateway is also the node's
# address (the kubelet refuses a loopback node IP) and where CoreDNS listens. The ranges are private
# and exist only on this bridge and in the Pods' network namespaces.
BRIDGE=kplbr0
POD_CIDR=10.217.0.0/24
NODE_IP=10.217.0.1
SERVICE_CIDR=10.218.0.0/24
ETCD_CLIENT_PORT=23791
ETCD_PEER_PORT=23801
APISERVER_PORT=16443
CLUSTER_DOMAIN=cluster.local
NODE_NAME=preloader-node
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
KUBECONFIG_FILE="$RUN/admin.kubeconfig"
# Every iptables rule we add carries this comment, so --stop removes exactly ours.
IPT_COMMENT=ollama-preloader-kubernetes

log() { printf 'prepare_kubernetes: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

need_root() { [[ $EUID -eq 0 ]] || die "$1 needs root (run this script as root)"; }

# --- tools -------------------------------------------------------------------------------------

APT_UPDATED=false
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  need_root "installing ${missing[*]}"
  log "installing ${missing[*]} with apt-get"
  if ! $APT_UPDATED; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# go install PACKAGE@VERSION into $BIN, unless the stamp says this exact package, version and ldflags
# were installed there (a version string alone would not catch a changed ldflag).
go_tool() {
  local name=$1 pkg=$2 version=$3 ldflags=$4
  local stamp="$BIN/.$name.stamp" want="$pkg@v$version $ldflags"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then
    return 0
  fi
  log "building $name $version from the Go module proxy"
  GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags="-s -w $ldflags" "$pkg@v$version" >&2
  printf '%s' "$want" >"$stamp"
}

install_python_tools() {
  # Output captured first: `pip show | grep -q` under pipefail fails when grep exits before pip is done.
  local shown=""
  [[ -x "$VENV/bin/python" ]] && shown="$("$VENV/bin/python" -m pip show kubernetes-validate 2>/dev/null || true)"
  if [[ ! -x "$VENV/bin/kubernetes-validate" ]] || ! grep -qx "Version: $KUBERNETES_VALIDATE_VERSION" <<<"$shown"; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  fi
  ln -sf "$VENV/bin/kubernetes-validate" "$BIN/kubernetes-validate"
}

# kubeconform reads schemas from a local tree only after two rewrites of the ones kubernetes-validate
# ships: without them it reports "could not find schema", which reads like a skip, not an error.
write_kubeconform_schemas() {
  local dest="$K_ROOT/schemas" marker="$K_ROOT/schemas/.complete-${SCHEMA_K8S_VERSIONS// /-}"
  [[ -f "$marker" ]] && return 0
  log "writing kubeconform schemas for $SCHEMA_K8S_VERSIONS from kubernetes-validate"
  rm -rf "$dest"
  # shellcheck disable=SC2086  # one argument per version
  "$VENV/bin/python" - "$dest" $SCHEMA_K8S_VERSIONS <<'EOF'
import json, pathlib, sys
import kubernetes_validate

dest = pathlib.Path(sys.argv[1])
root = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
for version in sys.argv[2:]:
    for suffix in ("", "-strict"):
        src = root / f"v{version}-local{suffix}"
        out = dest / f"v{version}-standalone{suffix}"
        out.mkdir(parents=True)
        for path in src.glob("*.json"):
            text = path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
            data = json.loads(text)
            if isinstance(data, dict):
                data.pop("$id", None)
            (out / path.name).write_text(json.dumps(data))
EOF
  touch "$marker"
}

# kube-apiserver, kubelet, the controller manager, the scheduler and kubectl from the k8s.io/kubernetes
# module: its go.mod points the k8s.io libraries at ./staging, which the module download lacks, so
# they are pointed at the published modules of the same release instead.
build_kubernetes() {
  local names=(kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl) name all=true
  local reported
  for name in "${names[@]}"; do
    reported=""
    if [[ $name == kubectl ]]; then
      [[ -x "$BIN/$name" ]] && reported="$("$BIN/$name" version --client 2>/dev/null || true)"
    else
      [[ -x "$BIN/$name" ]] && reported="$("$BIN/$name" --version 2>/dev/null || true)"
    fi
    grep -q "v$K8S_VERSION\$" <<<"$reported" || all=false
  done
  $all && return 0
  local tree="$SRC/kubernetes-v$K8S_VERSION"
  if [[ ! -f "$tree/.patched" ]]; then
    log "downloading k8s.io/kubernetes@v$K8S_VERSION (about 40 MB)"
    mkdir -p "$SRC"
    local dir
    dir="$(cd "$SRC" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$dir" ]] || die "go mod download gave no directory for k8s.io/kubernetes@v$K8S_VERSION"
    rm -rf "$tree"
    cp -r "$dir" "$tree"
    chmod -R u+w "$tree"
    rm -f "$tree/go.work" "$tree/go.work.sum"
    local minor=${K8S_VERSION#*.}
    minor=${minor%%.*}
    sed -i -E \
      -e '/k8s\.io\/sample-(controller|cli-plugin) => /d' \
      -e "s#^(\s*)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+\$#\1\2 => \2 v0.$minor.${K8S_VERSION##*.}#" \
      "$tree/go.mod"
    touch "$tree/.patched"
  fi
  local pkg=k8s.io/component-base/version
  local minor=${K8S_VERSION#*.}
  minor=${minor%%.*}
  local ld="-s -w -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  log "building ${names[*]} v$K8S_VERSION (about 6 min on 2 cores)"
  local targets=()
  for name in "${names[@]}"; do targets+=("./cmd/$name"); done
  (cd "$tree" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$BIN/" "${targets[@]}") >&2
}

# The sandbox ("pause") image: a static binary that sleeps until signalled, so no registry is needed.
build_pause() {
  [[ -x "$BIN/pause" ]] && return 0
  local dir="$SRC/pause"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'EOF'
// pause holds a Pod's namespaces open until the kubelet stops the sandbox.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
EOF
  printf 'module pause\n\ngo 1.21\n' >"$dir/go.mod"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/pause" .) >&2
}

tools() {
  local start=$SECONDS
  ensure_packages etcd-server containerd runc containernetworking-plugins conntrack socat iptables openssl
  mkdir -p "$BIN"
  install_python_tools
  write_kubeconform_schemas
  # Helm's default Kubernetes version (for `template` and `lint`) is an ldflag; unset, it is 1.20, which
  # the chart's kubeVersion refuses. Helm 3.22 is built against the 1.37 libraries.
  local h=helm.sh/helm/v3
  go_tool helm "$h/cmd/helm" "$HELM_VERSION" "-X $h/internal/version.version=v$HELM_VERSION \
-X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=37 \
-X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=37"
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
    "-X main.version=v$KUBECONFORM_VERSION"
  build_pause
  build_kubernetes
  go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION" ""
  log "tools ready in $((SECONDS - start)) s"
}

# --- the cluster: processes we own ---------------------------------------------------------------

# Prints the recorded pid of daemon NAME if that process still runs the same program; nothing otherwise.
# Checking the command name guards against a recycled pid that now belongs to something else.
owned_pid() {
  local file="$PIDS/$1.pid" pid comm
  [[ -f "$file" ]] || return 0
  read -r pid comm <"$file"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
    printf '%s\n' "$pid"
  fi
}

# start_daemon NAME COMMAND...: run a daemon in its own session (it outlives this script and never gets
# the signals aimed at the caller's process group), log to $LOGS/NAME.log, record its pid for --stop.
start_daemon() {
  local name=$1
  shift
  if [[ -n "$(owned_pid "$name")" ]]; then
    log "$name already runs (pid $(owned_pid "$name"))"
    return 0
  fi
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  # The command name the kernel reports (at most 15 characters), checked again at --stop.
  printf '%s %s\n' "$pid" "$(basename "$1" | cut -c1-15)" >"$PIDS/$name.pid"
  log "started $name (pid $pid, log $LOGS/$name.log)"
}

# wait_for WHAT SECONDS DAEMON COMMAND...: poll COMMAND until it succeeds; fail early if DAEMON died.
wait_for() {
  local what=$1 seconds=$2 daemon=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [[ -z "$(owned_pid "$daemon")" ]]; then
      tail -n 20 "$LOGS/$daemon.log" >&2 || true
      die "$daemon exited before $what; see $LOGS/$daemon.log"
    fi
    ((SECONDS < deadline)) || die "$what: not within $seconds s; see $LOGS/$daemon.log"
    sleep 0.5
  done
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=10s "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# PKI: a CA, the API server's serving certificate, one admin client certificate, the service-account
# key pair. Every component of this throwaway cluster authenticates as the admin (system:masters): the
# tests are about the chart, not about RBAC between control-plane components.
make_pki() {
  [[ -f "$PKI/.complete" ]] && return 0
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=ollama-preloader-test-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:${SERVICE_CIDR%0/*}1,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
      -days 3650 -extfile apiserver.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt \
      -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
  touch "$PKI/.complete"
}

write_kubeconfig() {
  cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: preloader
    cluster:
      server: https://127.0.0.1:$APISERVER_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: admin
    user:
      client-certificate: $PKI/admin.crt
      client-key: $PKI/admin.key
contexts:
  - name: preloader
    context: {cluster: preloader, user: admin}
current-context: preloader
EOF
  chmod 600 "$KUBECONFIG_FILE"
}

start_control_plane() {
  mkdir -p "$RUN"
  make_pki
  write_kubeconfig
  start_daemon etcd /usr/bin/etcd --name preloader --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "preloader=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_for "etcd answers" 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
  # --endpoint-reconciler-type=none: it refuses a loopback advertise address otherwise.
  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --profiling=false
  wait_for "kube-apiserver is ready" 90 kube-apiserver kubectl_ get --raw /readyz
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-name preloader --profiling=false
  start_daemon kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false
}

# --- the node --------------------------------------------------------------------------------------

ipt_rules() { printf '%s\n' "FORWARD -i $BRIDGE -j ACCEPT" "FORWARD -o $BRIDGE -j ACCEPT"; }

# The kubelet refuses a loopback node IP, so the node's address is this bridge's; Pods get addresses on
# it from the bridge CNI plugin. A FORWARD policy of DROP (left by Docker) silently drops pod-to-pod
# traffic once br_netfilter is loaded: accept this bridge's traffic, nothing else.
setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    log "created bridge $BRIDGE"
  fi
  ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086  # the rule is several words
    iptables -C $rule -m comment --comment "$IPT_COMMENT" 2>/dev/null ||
      iptables -I $rule -m comment --comment "$IPT_COMMENT"
  done < <(ipt_rules)
}

teardown_network() {
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086  # the rule is several words
    while iptables -D $rule -m comment --comment "$IPT_COMMENT" 2>/dev/null; do :; done
  done < <(ipt_rules)
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE"
    log "removed bridge $BRIDGE and its iptables rules"
  fi
}

start_containerd() {
  mkdir -p "$RUN/containerd" "$RUN/cni/net.d" "$K_ROOT/containerd-root"
  # The Pods' only route is their own subnet: nothing in a Pod can reach beyond this machine.
  cat >"$RUN/cni/net.d/10-preloader.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "preloader",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "subnet": "$POD_CIDR", "gateway": "$NODE_IP",
        "routes": [{"dst": "$POD_CIDR"}], "dataDir": "$RUN/cni/ipam"
      }
    }
  ]
}
EOF
  # Images live in containerd-root, outside the run directory, so a restart does not re-import them.
  # restrict_oom_score_adj: the sandbox here cannot lower OOM scores ("can't get final child's PID").
  cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$K_ROOT/containerd-root"
state = "$RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
  start_daemon containerd /usr/bin/containerd --config "$RUN/containerd/config.toml"
  wait_for "containerd answers" 30 containerd ctr_ version
}

# Images come from the local Docker engine (docker save | ctr import): no registry is involved.
import_image() {
  local image=$1
  local listed
  listed="$(ctr_ images ls -q)"
  grep -qx "docker.io/$image" <<<"$listed" && return 0
  docker image inspect "$image" >/dev/null 2>&1 ||
    die "image $image is not on the Docker engine; run scripts/prepare_docker.sh first"
  log "importing $image into containerd"
  docker save "$image" | ctr_ images import - >/dev/null
}

build_pause_image() {
  docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  local context
  context="$(mktemp -d)"
  cp "$BIN/pause" "$context/pause"
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$context/Dockerfile"
  DOCKER_BUILDKIT=0 docker build --quiet -t "$PAUSE_IMAGE" "$context" >/dev/null 2>"$LOGS/pause-build.log" ||
    { cat "$LOGS/pause-build.log" >&2; die "building $PAUSE_IMAGE failed"; }
  rm -rf "$context"
}

start_kubelet() {
  mkdir -p "$RUN/kubelet"
  # No upstream resolvers in the Pods: only the cluster's names resolve (CoreDNS on the node's address).
  printf '# only cluster names resolve in the test cluster\n' >"$RUN/resolv.conf"
  cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
# This machine has cgroup v1 only, and swap settings the kubelet would refuse.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $RUN/resolv.conf
podLogsDir: $RUN/pod-logs
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
podCIDR: $POD_CIDR
maxPods: 30
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  start_daemon kubelet "$BIN/kubelet" --config "$RUN/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_FILE" \
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --root-dir "$RUN/kubelet/root" \
    --cert-dir "$RUN/kubelet/pki"
}

node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

start_coredns() {
  cat >"$RUN/Corefile" <<EOF
$CLUSTER_DOMAIN:53 {
    bind $NODE_IP
    errors
    kubernetes $CLUSTER_DOMAIN {
        kubeconfig $KUBECONFIG_FILE
    }
}
EOF
  start_daemon coredns "$BIN/coredns" -conf "$RUN/Corefile"
}

start_cluster() {
  need_root "running a kubelet"
  docker info >/dev/null 2>&1 ||
    die "no Docker engine answers: run scripts/prepare_docker.sh first (its images are imported from it)"
  setup_network
  start_control_plane
  start_containerd
  build_pause_image
  import_image "$PAUSE_IMAGE"
  import_image "$OLLAMA_IMAGE"
  start_kubelet
  start_coredns
  wait_for "node $NODE_NAME is Ready" 120 kubelet node_ready
  wait_for "the default ServiceAccount exists" 60 kube-controller-manager kubectl_ get serviceaccount default
  cat >"$RUN/env" <<EOF
KUBECONFIG=$KUBECONFIG_FILE
PRELOADER_K8S_BIN=$BIN
PRELOADER_K8S_CONTAINERD=$CONTAINERD_SOCK
PRELOADER_K8S_SCHEMAS=$K_ROOT/schemas
PRELOADER_K8S_NODE=$NODE_NAME
EOF
  cat "$RUN/env"
}

# --- --stop ---------------------------------------------------------------------------------------

stop_daemon() {
  local name=$1 pid
  pid="$(owned_pid "$name")"
  if [[ -z "$pid" ]]; then
    rm -f "$PIDS/$name.pid"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 40); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.25
  done
  if [[ -d "/proc/$pid" ]]; then
    log "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
  log "stopped $name (pid $pid)"
}

stop_cluster() {
  # Pods first, while the kubelet still runs, so their containers, mounts and shims go away cleanly.
  if [[ -n "$(owned_pid kubelet)" && -n "$(owned_pid kube-apiserver)" ]]; then
    kubectl_ delete pods --all --all-namespaces --grace-period=1 --timeout=60s >/dev/null 2>&1 || true
  fi
  local name
  for name in coredns kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_daemon "$name"
  done
  if [[ -n "$(owned_pid containerd)" ]]; then
    # Containers the kubelet left behind: kill their tasks so that their shims exit.
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1 || true
      ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    stop_daemon containerd
  fi
  # The kubelet's and containerd's mounts (volumes, sandboxes' shm, root filesystems), deepest first.
  local mount
  while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || log "could not unmount $mount"
  done < <(findmnt -rn -o TARGET | grep -F "$RUN/" | sort -r)
  # The cgroups our kubelet made (cgroupfs driver); empty once every pod is gone.
  local dir
  for dir in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$dir" ]] && { find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
  done
  teardown_network
  remove_host_leftovers
  rm -rf "$RUN"
  log "stopped; nothing this script started is left running"
}

# What the kubelet, containerd and the CNI plugins write at fixed paths outside the run directory; each
# directory is removed only when empty (nothing else uses it then).
remove_host_leftovers() {
  [[ -d /var/log/containers ]] && find /var/log/containers -maxdepth 1 -type l -lname "$RUN/*" -delete
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/cni/results/preloader-*
  local dir
  for dir in /var/log/containers /var/log/pods /var/lib/kubelet/device-plugins /var/lib/kubelet /var/lib/cni/results \
    /var/lib/cni /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd; do
    [[ -d "$dir" ]] && rmdir "$dir" 2>/dev/null || true
  done
}

main() {
  case "${1:-}" in
    "")
      local start=$SECONDS
      tools
      start_cluster
      log "cluster ready in $((SECONDS - start)) s (stop it with: $0 --stop)"
      ;;
    --tools) tools ;;
    --stop) stop_cluster ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown argument '$1' (use --tools, --stop or --help)" ;;
  esac
}

main "$@"
