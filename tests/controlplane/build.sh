#!/usr/bin/env bash
# Builds the real control plane muster's tests run against (etcd, kube-apiserver, kube-scheduler) from the
# published Go modules, once per machine, into a cache outside the checkout keyed by the pinned versions.
#
# Prints the cache directory on stdout (the only stdout line); progress goes to stderr.
# Reuses Go's module and build caches, so a rebuild after a version bump is incremental.
#
#   MUSTER_CONTROL_PLANE_CACHE  root of the cache (default: $XDG_CACHE_HOME/muster or ~/.cache/muster)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The versions are read from the wrapper modules, so go.mod is the single place they are pinned.
kube_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")"
etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")"
if [[ -z "$kube_version" || -z "$etcd_version" ]]; then
  echo "build.sh: cannot read pinned versions from $here/{kube,etcd}/go.mod" >&2
  exit 1
fi

cache_root="${MUSTER_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/muster}"
bin_dir="$cache_root/controlplane/kubernetes-${kube_version}_etcd-${etcd_version}"

# Never switch Go toolchains behind the caller's back: both modules build with the machine's Go (>= 1.26).
export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -trimpath"

build() { # build <module dir> <package> <output name> <version string>
  local dir="$1" pkg="$2" out="$3" version="$4"
  if [[ -x "$bin_dir/$out" ]]; then
    echo "build.sh: $out $version is cached in $bin_dir" >&2
    return
  fi
  echo "build.sh: building $out $version (cold: several minutes on 2 cores)" >&2
  local start=$SECONDS
  mkdir -p "$bin_dir"
  # Build into a temporary name and rename, so an interrupted build never leaves a truncated binary in the cache.
  (cd "$dir" && go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
    -o "$bin_dir/.$out.tmp.$$" "$pkg")
  mv -f "$bin_dir/.$out.tmp.$$" "$bin_dir/$out"
  echo "build.sh: built $out in $((SECONDS - start)) s ($(du -h "$bin_dir/$out" | cut -f1))" >&2
}

build "$here/etcd" . etcd "$etcd_version"
build "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$kube_version"
build "$here/kube" k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler "$kube_version"

echo "$bin_dir"
