#!/usr/bin/env bash
# Builds the operations tools muster's chart and monitoring tests run (helm, promtool) from their published Go
# modules, once per machine, into a cache outside the checkout keyed by the pinned versions.
#
# Prints the directory holding both binaries on stdout (the only stdout line); progress goes to stderr.
#
#   MUSTER_CONTROL_PLANE_CACHE  root of the cache (default: $XDG_CACHE_HOME/muster or ~/.cache/muster)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The versions are read from the wrapper modules, so go.mod is the single place they are pinned.
helm_version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v4" {print $3}' "$here/helm/go.mod")"
prometheus_version="$(awk '$1 == "require" && $2 == "github.com/prometheus/prometheus" {print $3}' "$here/promtool/go.mod")"
if [[ -z "$helm_version" || -z "$prometheus_version" ]]; then
  echo "ops-tools.sh: cannot read pinned versions from $here/{helm,promtool}/go.mod" >&2
  exit 1
fi

cache_root="${MUSTER_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/muster}"
bin_dir="$cache_root/ops-tools/helm-${helm_version}_prometheus-${prometheus_version}"

export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -trimpath"

build() { # build <module dir> <package> <output name> <ldflags>
  local dir="$1" pkg="$2" out="$3" ldflags="$4"
  if [[ -x "$bin_dir/$out" ]]; then
    echo "ops-tools.sh: $out is cached in $bin_dir" >&2
    return
  fi
  echo "ops-tools.sh: building $out (cold: a few minutes on 2 cores)" >&2
  local start=$SECONDS
  mkdir -p "$bin_dir"
  # Build into a temporary name and rename, so an interrupted build never leaves a truncated binary in the cache.
  (cd "$dir" && go build -ldflags "-s -w $ldflags" -o "$bin_dir/.$out.tmp.$$" "$pkg")
  mv -f "$bin_dir/.$out.tmp.$$" "$bin_dir/$out"
  echo "ops-tools.sh: built $out in $((SECONDS - start)) s ($(du -h "$bin_dir/$out" | cut -f1))" >&2
}

build "$here/helm" helm.sh/helm/v4/cmd/helm helm "-X helm.sh/helm/v4/internal/version.version=$helm_version"
# promtool v3.x is published as module version v0.3xx.y; its build info names the module version.
build "$here/promtool" github.com/prometheus/prometheus/cmd/promtool promtool \
  "-X github.com/prometheus/common/version.Version=$prometheus_version"

echo "$bin_dir"
