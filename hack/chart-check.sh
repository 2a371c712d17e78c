#!/usr/bin/env bash
# Checks the Helm chart: `helm lint`, `helm template` in both RBAC scopes with checks on
# what each renders, and, when KUBECONFIG is set, `kubectl apply --dry-run=server` of each
# rendering against that cluster. Writes nothing into the repository.
#
#   hack/chart-check.sh
#   KUBECONFIG=target/control-plane/kubeconfig hack/chart-check.sh
#
# The API server rejects objects in a namespace that does not exist, so the namespaces
# below must exist for the dry run. Settings (environment):
#   SKLM_CHART_NAMESPACE        release namespace (default: default)
#   SKLM_CHART_WATCH_NAMESPACE  watched namespace of the `namespace` scope (default:
#                               kube-public). It differs from the release namespace, so the
#                               check covers a Role outside the release namespace.
#   SKLM_CHART_WATCH_NAMESPACE_2  second watched namespace, for the rendering with a list
#                               of two (default: kube-node-lease)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$repo_root/charts/sklm-restore-operator"
release_namespace="${SKLM_CHART_NAMESPACE:-default}"
watch_namespace="${SKLM_CHART_WATCH_NAMESPACE:-kube-public}"
watch_namespace_2="${SKLM_CHART_WATCH_NAMESPACE_2:-kube-node-lease}"
release=sklm-restore-operator

step() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  printf 'chart-check: FAIL: %s\n' "$*" >&2
  exit 1
}

helm="$("$repo_root/hack/tools.sh" helm)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Renders the chart's templates with extra `helm template` arguments into $work/NAME.yaml.
# The CRD from crds/ is left out here and checked on its own.
render() {
  local name="$1"
  shift
  "$helm" template "$release" "$chart" --namespace "$release_namespace" "$@" \
    >"$work/$name.yaml" || fail "helm template ($name) failed"
}

# Asserts that the rendering NAME contains (or, with `!`, lacks) a line matching REGEX.
expect_line() {
  local negate=0
  if [[ $1 == "!" ]]; then
    negate=1
    shift
  fi
  local name="$1" regex="$2"
  if grep -Eq -- "$regex" "$work/$name.yaml"; then
    [[ $negate == 0 ]] || fail "$name: unexpected line matching /$regex/"
  else
    [[ $negate == 1 ]] || fail "$name: no line matching /$regex/"
  fi
}

# Asserts that the rendering NAME has exactly COUNT lines matching REGEX.
expect_count() {
  local name="$1" regex="$2" count="$3" found
  found="$(grep -Ec -- "$regex" "$work/$name.yaml" || true)"
  [[ $found == "$count" ]] || fail "$name: $found lines match /$regex/, expected $count"
}

# Asserts that `helm template` rejects the values, with an error matching REGEX.
expect_render_error() {
  local regex="$1"
  shift
  local output
  if output="$("$helm" template "$release" "$chart" --namespace "$release_namespace" "$@" 2>&1)"; then
    fail "helm template $* succeeded, expected an error matching /$regex/"
  fi
  grep -Eq -- "$regex" <<<"$output" \
    || fail "helm template $* failed with an unexpected error: $output"
}

step "chart CRD equals crds/"
cmp -s "$repo_root/crds/sklmrestores.sklm.dev.yaml" "$chart/crds/sklmrestores.sklm.dev.yaml" \
  || fail "charts/sklm-restore-operator/crds/sklmrestores.sklm.dev.yaml differs from crds/sklmrestores.sklm.dev.yaml; copy crds/ into the chart"

step "helm lint ($("$helm" version --template '{{.Version}}'))"
"$helm" lint --strict "$chart" --namespace "$release_namespace"
"$helm" lint --strict "$chart" --namespace "$release_namespace" \
  --set rbac.scope=namespace --set "watchNamespaces={$watch_namespace,$watch_namespace_2}"

step "helm template: cluster scope, one replica"
render cluster
expect_line cluster '^kind: ClusterRole$'
expect_line cluster '^kind: ClusterRoleBinding$'
expect_line ! cluster '^kind: Role$'
expect_line ! cluster '- --namespace='
expect_line ! cluster '- --leader-election$'
expect_line cluster 'fieldPath: metadata.name$'
expect_line cluster 'fieldPath: metadata.namespace$'
expect_line cluster 'readOnlyRootFilesystem: true$'
expect_line cluster 'runAsUser: 65532$'
expect_line ! cluster '^kind: ServiceMonitor$'

step "helm template: cluster scope, two replicas"
render cluster-ha --set replicas=2
expect_line cluster-ha '- --leader-election$'
expect_line cluster-ha "^  name: $release-leader-election$"
expect_line cluster-ha 'resourceNames: \["sklm-restore-operator"\]'

step "helm template: namespace scope, leader election on"
render namespace --set rbac.scope=namespace --set "watchNamespaces={$watch_namespace}" \
  --set leaderElection.enabled=true
expect_count namespace '- --namespace=' 1
expect_line namespace "- --namespace=$watch_namespace\$"
expect_line namespace '- --leader-election$'
# The watch Role and the leader-election Role, each with its binding.
expect_count namespace '^kind: Role$' 2
expect_count namespace '^kind: RoleBinding$' 2
expect_line namespace "^  namespace: $watch_namespace\$"
expect_line ! namespace '^kind: ClusterRole'

step "helm template: namespace scope, two namespaces, one listed twice"
render namespace-list --set rbac.scope=namespace \
  --set "watchNamespaces={$watch_namespace,$watch_namespace_2,$watch_namespace}"
expect_count namespace-list '- --namespace=' 2
expect_line namespace-list "- --namespace=$watch_namespace\$"
expect_line namespace-list "- --namespace=$watch_namespace_2\$"
expect_count namespace-list '^kind: Role$' 2
expect_count namespace-list '^kind: RoleBinding$' 2
expect_count namespace-list "^  namespace: $watch_namespace\$" 2
expect_count namespace-list "^  namespace: $watch_namespace_2\$" 2
expect_line ! namespace-list '^kind: ClusterRole'

step "helm template: namespace scope defaults to the release namespace"
render namespace-default --set rbac.scope=namespace
expect_line namespace-default "- --namespace=$release_namespace\$"

step "helm template: ServiceMonitor, image digest"
render extras --set serviceMonitor.enabled=true \
  --set image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000
expect_line extras '^kind: ServiceMonitor$'
expect_line extras 'image: "sklm-restore-operator@sha256:0{64}"$'

step "helm template: invalid values are rejected"
expect_render_error 'rbac.scope must be "cluster" or "namespace"' --set rbac.scope=everywhere
expect_render_error 'serviceAccount.name is required' --set serviceAccount.create=false
expect_render_error 'watchNamespace was replaced by the list watchNamespaces' \
  --set rbac.scope=namespace --set watchNamespace=keys
expect_render_error '"Keys" is not a namespace name' \
  --set rbac.scope=namespace --set 'watchNamespaces={keys,Keys}'
expect_render_error 'watchNamespaces must be a list' \
  --set rbac.scope=namespace --set watchNamespaces=keys
expect_render_error 'watchNamespaces applies only with rbac.scope=namespace' \
  --set rbac.scope=cluster --set 'watchNamespaces={keys}'

if [[ -n "${KUBECONFIG:-}" ]]; then
  server_version="$(kubectl version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tail -n1)"
  # Server-side apply, because the CRD usually exists already and was not created by a
  # client-side apply, which would print a warning about a missing annotation.
  step "kubectl apply --dry-run=server: CRD (server ${server_version:-version unknown})"
  kubectl apply --dry-run=server --server-side --force-conflicts --field-manager=sklm-chart-check \
    -f "$chart/crds/sklmrestores.sklm.dev.yaml" || fail "the API server rejected the CRD"
  # The ServiceMonitor rendering is left out: it needs the Prometheus Operator CRDs.
  for name in cluster cluster-ha namespace namespace-list namespace-default; do
    step "kubectl apply --dry-run=server: $name (server ${server_version:-version unknown})"
    kubectl apply --dry-run=server --validate=strict -f - <"$work/$name.yaml" \
      || fail "the API server rejected the $name rendering"
  done
else
  step "KUBECONFIG is not set: skipping kubectl apply --dry-run=server"
fi

printf '\nchart-check: all checks passed\n' >&2
