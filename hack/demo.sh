#!/usr/bin/env bash
# The local demo: a control plane, the SKLM simulator, the operator, and one SklmRestore
# watched through every restore step to Completed, ending with `kubectl wait` for Ready.
# Everything it starts is stopped at the end (a control plane that was already running is
# left running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
work="$repo/target/demo"
namespace=sklm-demo
rm -rf "$work"
mkdir -p "$work"

say() { printf '\n### %s\n' "$*"; }
pids=()
started_plane=0
kubeconfig_ready=0
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Only the local control plane's namespace, never one in the user's own kubeconfig.
  if [[ $kubeconfig_ready == 1 ]]; then
    kubectl delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true
  fi
  if [[ $started_plane == 1 ]]; then hack/control-plane.sh down || true; fi
}
trap cleanup EXIT

say "building the operator and the simulator (a few minutes on the first run)"
cargo build --workspace --quiet

say "starting the control plane (the first run builds kube-apiserver, about 6 minutes)"
# Read the status whole: `grep -q` closing the pipe early would fail it under pipefail.
plane_status="$(hack/control-plane.sh status)"
grep -q '^kube-apiserver: running' <<<"$plane_status" || started_plane=1
# Never fall back to the user's own cluster: a failed `up` prints nothing, and `eval ""`
# would succeed with the old KUBECONFIG.
unset KUBECONFIG
plane_env="$(hack/control-plane.sh up)"
eval "$plane_env"
[[ -n ${KUBECONFIG:-} ]] || { echo "hack/control-plane.sh up gave no KUBECONFIG" >&2; exit 1; }
kubeconfig_ready=1
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/sklmrestores.sklm.dev --timeout=60s >/dev/null
# A namespace left by an earlier run on a reused control plane may still be terminating.
kubectl delete namespace "$namespace" --ignore-not-found --timeout=120s >/dev/null
kubectl create namespace "$namespace" >/dev/null

say "starting the SKLM simulator: a restore starts after 10 s, one step every 3 s"
password="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
target/debug/sklm-sim --ready-file "$work/sim.json" --ca-out "$work/ca.crt" \
  --user "klmadmin:$password" --auto-restore-after 10 --step-ms 3000 \
  >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/sim.json" ]] && break; sleep 0.1; done
[[ -s "$work/sim.json" ]] || { echo "the simulator did not start; see $work/sim.log" >&2; exit 1; }
api="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$work/sim.json")"

say "Secrets: credentials and the simulator's CA"
kubectl -n "$namespace" create secret generic gklm-admin \
  --from-literal=userid=klmadmin --from-literal=password="$password" >/dev/null
kubectl -n "$namespace" create secret generic gklm-ca --from-file=ca.crt="$work/ca.crt" >/dev/null

say "starting the operator (log: $work/operator.log)"
target/debug/sklm-restore-operator run --namespace "$namespace" --http-addr 127.0.0.1:0 \
  >"$work/operator.log" 2>&1 &
pids+=($!)

say "creating the SklmRestore"
kubectl -n "$namespace" apply -f - <<YAML
apiVersion: sklm.dev/v1alpha1
kind: SklmRestore
metadata:
  name: dr-demo
spec:
  server:
    url: https://$api
    caSecretRef: {name: gklm-ca, key: ca.crt}
  credentialsSecretRef: {name: gklm-admin}
  pollIntervalSeconds: 1
YAML

say "kubectl get sklmrestores, printed on every change"
last=""
deadline=$((SECONDS + 180))
while ((SECONDS < deadline)); do
  state="$(kubectl -n "$namespace" get sklmrestore dr-demo \
    -o jsonpath='{.status.phase}/{.status.restorePhase}/{.status.conditions[?(@.type=="Ready")].reason}')"
  if [[ "$state" != "$last" && "$state" != "//" ]]; then
    kubectl -n "$namespace" get sklmrestores
    echo
    last="$state"
  fi
  [[ "$state" == Completed/* || "$state" == Failed/* ]] && break
  sleep 0.5
done

say "kubectl wait --for=condition=Ready"
kubectl -n "$namespace" wait --for=condition=Ready sklmrestore/dr-demo --timeout=30s
kubectl -n "$namespace" get sklmrestore dr-demo -o wide
