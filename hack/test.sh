#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, unit tests, and integration tests against
# a local control plane (hack/control-plane.sh) and the SKLM simulator.
#
# Needs root on a fresh Debian machine, for apt (etcd, Go, the Kubernetes source package).
# A control plane that is already running is reused and left running; one started here is
# stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "toolchain components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "control plane"
started_here=0
# Read the status whole: `grep -q` closing the pipe early would fail it under pipefail.
plane_status="$(hack/control-plane.sh status)"
if ! grep -q '^kube-apiserver: running' <<<"$plane_status"; then
  started_here=1
fi
cleanup() {
  if [[ $started_here == 1 ]]; then hack/control-plane.sh down || true; fi
}
trap cleanup EXIT
# Never fall back to the user's own cluster: a failed `up` prints nothing, and `eval ""`
# would succeed with the old KUBECONFIG.
unset KUBECONFIG
plane_env="$(hack/control-plane.sh up)"
eval "$plane_env"
[[ -n ${KUBECONFIG:-} ]] || { echo "hack/control-plane.sh up gave no KUBECONFIG" >&2; exit 1; }
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/sklmrestores.sklm.dev --timeout=60s >/dev/null

step "Argo CD health check tests (Lua)"
deploy/argocd/test.sh

step "Helm chart: lint, template, server dry run"
hack/chart-check.sh

step "cargo test"
cargo test --workspace --locked -- --test-threads "${SKLM_TEST_THREADS:-4}"
