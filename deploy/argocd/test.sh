#!/usr/bin/env bash
# Tests the Argo CD health check: checks that argocd-cm-patch.yaml inlines exactly
# health.lua, then runs health.lua on every case in testdata/ with Lua 5.1 (installed by
# hack/tools.sh lua). The last line of output is "N passed, M failed".
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$dir/../.." && pwd)"
key='resource.customizations.health.sklm.dev_SklmRestore'

fail() {
  printf 'argocd test: FAIL: %s\n' "$1" >&2
  [[ $# -gt 1 ]] && printf 'argocd test: fix: %s\n' "$2" >&2
  exit 1
}

lua="$("$repo_root/hack/tools.sh" lua)"

# Prints the literal block under $key with its four-space indentation removed.
extract_inlined_script() {
  awk -v header="  $key: |" '
    $0 == header { inside = 1; found = 1; next }
    inside && /^    / { print substr($0, 5); next }
    inside && /^[[:space:]]*$/ { print ""; next }
    inside { exit }
    END { if (!found) exit 3 }
  ' "$dir/argocd-cm-patch.yaml"
}

# Drops trailing empty lines, which a YAML literal block (`|`) does not keep.
trim_trailing_blank_lines() {
  sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}'
}

inlined="$(extract_inlined_script)" \
  || fail "argocd-cm-patch.yaml has no line \"  $key: |\"" \
    "put the script under data.$key as a literal block"
if ! diff -u --label health.lua --label "argocd-cm-patch.yaml ($key)" \
  <(trim_trailing_blank_lines <"$dir/health.lua") <(printf '%s\n' "$inlined"); then
  fail "the script in argocd-cm-patch.yaml differs from health.lua" \
    "copy health.lua into argocd-cm-patch.yaml, each non-empty line indented by four spaces"
fi
echo "argocd-cm-patch.yaml inlines health.lua unchanged"

shopt -s nullglob
cases=("$dir"/testdata/*.json)
[[ ${#cases[@]} -gt 0 ]] || fail "no test cases in $dir/testdata"
"$lua" "$dir/run_tests.lua" "$dir/health.lua" "${cases[@]}"
