#!/usr/bin/env bash
# Starts and stops a local Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager. The two Kubernetes binaries are built once from Debian's
# `kubernetes` source package (v1.20) and cached outside the checkout.
#
#   hack/control-plane.sh up     # install, build if needed, start; prints `export KUBECONFIG=...`
#   hack/control-plane.sh down   # stop exactly what `up` started
#   hack/control-plane.sh status
#   hack/control-plane.sh build  # only install and build the binaries
#
# Settings (environment): SKLM_CACHE_DIR (build cache, default ~/.cache/sklm-restore-operator),
# SKLM_CP_DIR (state: data, certificates, logs; default <repo>/target/control-plane),
# SKLM_ETCD_PORT (default 23790; the etcd peer port is this plus 10) and
# SKLM_APISERVER_PORT (default 16443; kube-controller-manager listens on this plus 1).
# `up` fails when one of these ports is in use. It installs kubectl (Debian's
# kubernetes-client) when none is on the PATH, and adds a deb-src entry for bookworm to
# /etc/apt/sources.list.d/ when it must fetch the Kubernetes source package.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${SKLM_CACHE_DIR:-$HOME/.cache/sklm-restore-operator}"
state_dir="${SKLM_CP_DIR:-$repo_root/target/control-plane}"
etcd_port="${SKLM_ETCD_PORT:-23790}"
etcd_peer_port="$((etcd_port + 10))"
api_port="${SKLM_APISERVER_PORT:-16443}"
kcm_port="$((api_port + 1))"
bin_dir="$cache_dir/kubernetes-1.20/bin"

log() { printf 'control-plane: %s\n' "$*" >&2; }
fail() {
  printf 'control-plane: error: %s\n' "$1" >&2
  [[ $# -gt 1 ]] && printf 'control-plane: fix: %s\n' "$2" >&2
  exit 1
}

need_root_for_apt() {
  [[ "$(id -u)" == 0 ]] || fail "installing Debian packages ($*) needs root" \
    "run as root, or install them yourself: apt-get install $*"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  need_root_for_apt "${missing[@]}"
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null || fail "apt-get update failed" "check the apt sources"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
      || fail "apt-get install ${missing[*]} failed" "run it by hand to see why"
  fi
}

# Debian's etcd-server package starts its own unit on the default ports; ours runs apart.
install_etcd() {
  command -v etcd >/dev/null && return 0
  apt_install etcd-server
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
  fi
  command -v etcd >/dev/null || fail "etcd not found after installing etcd-server"
}

add_deb_src() {
  local list=/etc/apt/sources.list.d/sklm-bookworm-src.sources
  grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
    && return 0
  need_root_for_apt "(deb-src line for bookworm)"
  log "adding a deb-src source for bookworm main"
  cat >"$list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -q >/dev/null || fail "apt-get update failed after adding $list"
}

build_kubernetes() {
  [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/kube-controller-manager" ]] && return 0
  apt_install golang-go golang-github-modern-go-reflect2-dev dpkg-dev rsync
  add_deb_src
  local src_root="$cache_dir/kubernetes-1.20/src"
  rm -rf "$src_root"
  mkdir -p "$src_root"
  log "fetching Debian's kubernetes source package into $src_root"
  (cd "$src_root" && apt-get source -q kubernetes >/dev/null 2>&1) \
    || fail "apt-get source kubernetes failed" "check that a bookworm deb-src source exists"
  local tree
  tree="$(find "$src_root" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)"
  [[ -n "$tree" ]] || fail "no kubernetes-* folder in $src_root after apt-get source"

  # reflect2 1.0.1, vendored by Kubernetes 1.20, crashes under Go 1.18 and newer; Debian
  # ships 1.0.2, which does not.
  local reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -d "$reflect2" ]] || fail "missing $reflect2" "apt-get install golang-github-modern-go-reflect2-dev"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  rsync -a "$reflect2/" "$tree/vendor/github.com/modern-go/reflect2/"

  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  log "building kube-apiserver and kube-controller-manager (about 6 minutes per core pair)"
  (
    cd "$tree/.go/src/k8s.io/kubernetes"
    export GOPATH="$tree/.go" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="$cache_dir/go-build"
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$cache_dir/build.log" 2>&1
  ) || fail "building Kubernetes failed" "read $cache_dir/build.log"
  mkdir -p "$bin_dir"
  local out
  for name in kube-apiserver kube-controller-manager; do
    out="$(find "$tree/_output" -type f -name "$name" -perm -u+x | head -n1)"
    [[ -n "$out" ]] || fail "$name not found under $tree/_output" "read $cache_dir/build.log"
    cp "$out" "$bin_dir/$name"
  done
  rm -rf "$src_root"
  log "cached binaries in $bin_dir"
}

make_certs() {
  local pki="$state_dir/pki"
  [[ -f "$pki/serving.crt" ]] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sklm-local-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout serving.key -out serving.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out serving.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

# Static bearer tokens: the admin, and a user the RBAC tests bind to the chart's roles.
make_tokens() {
  local file="$state_dir/tokens.csv"
  [[ -f "$file" ]] && return 0
  local admin operator
  admin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  operator="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s,admin,admin-uid,"system:masters"\n' "$admin" >"$file"
  printf '%s,system:serviceaccount:sklm-system:sklm-restore-operator,operator-uid,"system:serviceaccounts"\n' \
    "$operator" >>"$file"
  chmod 600 "$file"
}

write_kubeconfig() {
  local name="$1" token="$2" file="$3"
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $state_dir/pki/ca.crt
users:
- name: $name
  user:
    token: $token
contexts:
- name: $name
  context: {cluster: local, user: $name}
current-context: $name
KC
  chmod 600 "$file"
}

# Alive and not a zombie: where PID 1 does not reap orphans, a stopped process lingers as Z.
running() {
  local pidfile="$state_dir/$1.pid" pid state
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != Z ]]
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts a process unless it runs already; the ports it will listen on must be free, so
# a second control plane never talks to the first one's etcd.
start() {
  local name="$1" ports="$2"
  shift 2
  running "$name" && return 0
  for port in $ports; do
    port_in_use "$port" && fail "port $port, needed by $name, is in use" \
      "stop what listens there, or pick other ports with SKLM_ETCD_PORT and SKLM_APISERVER_PORT"
  done
  "$@" >"$state_dir/$name.log" 2>&1 &
  echo $! >"$state_dir/$name.pid"
}

wait_ready() {
  local what="$1" url="$2" deadline=$((SECONDS + 60))
  while true; do
    running "$what" || fail "$what exited" "read $state_dir/$what.log"
    curl -fsk --max-time 2 ${3:+-H "Authorization: Bearer $3"} "$url" >/dev/null 2>&1 && return 0
    ((SECONDS < deadline)) || fail "$what did not become ready within 60 s" \
      "read $state_dir/$what.log"
    sleep 0.5
  done
}

up() {
  command -v curl >/dev/null || apt_install curl
  command -v kubectl >/dev/null || apt_install kubernetes-client
  install_etcd
  build_kubernetes
  mkdir -p "$state_dir"
  make_certs
  make_tokens
  local admin_token operator_token
  admin_token="$(sed -n 1p "$state_dir/tokens.csv" | cut -d, -f1)"
  operator_token="$(sed -n 2p "$state_dir/tokens.csv" | cut -d, -f1)"
  write_kubeconfig admin "$admin_token" "$state_dir/kubeconfig"
  write_kubeconfig operator "$operator_token" "$state_dir/operator.kubeconfig"

  start etcd "$etcd_port $etcd_peer_port" etcd --name sklm-local --data-dir "$state_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "sklm-local=http://127.0.0.1:$etcd_peer_port"
  wait_ready etcd "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$api_port" "$bin_dir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --insecure-port 0 --endpoint-reconciler-type none \
    --tls-cert-file "$state_dir/pki/serving.crt" --tls-private-key-file "$state_dir/pki/serving.key" \
    --client-ca-file "$state_dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$state_dir/pki/sa.pub" \
    --service-account-signing-key-file "$state_dir/pki/sa.key" \
    --token-auth-file "$state_dir/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/24
  wait_ready kube-apiserver "https://127.0.0.1:$api_port/readyz" "$admin_token"

  start kube-controller-manager "$kcm_port" "$bin_dir/kube-controller-manager" \
    --kubeconfig "$state_dir/kubeconfig" --controllers namespace,garbagecollector \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$kcm_port" --port 0 \
    --authentication-skip-lookup=true
  log "ready: API server https://127.0.0.1:$api_port, logs in $state_dir"
  echo "export KUBECONFIG=$state_dir/kubeconfig"
}

down() {
  local name pid
  for name in kube-controller-manager kube-apiserver etcd; do
    if running "$name"; then
      pid="$(cat "$state_dir/$name.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$state_dir/$name.pid"
  done
  rm -rf "$state_dir/etcd"
}

status() {
  for name in etcd kube-apiserver kube-controller-manager; do
    if running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  build) install_etcd; build_kubernetes ;;
  *) echo "usage: $0 up|down|status|build" >&2; exit 2 ;;
esac
