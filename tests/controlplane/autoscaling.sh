#!/usr/bin/env bash
# Builds the autoscaling components muster's elastic-cluster tests run against, from their published Go modules,
# once per machine, into a cache outside the checkout keyed by the pinned versions:
#   - karpenter-kwok: Karpenter with its KWOK cloud provider (sigs.k8s.io/karpenter/kwok)
#   - kwok: the KWOK controller that keeps fake nodes Ready and runs the pods bound to them (sigs.k8s.io/kwok)
#
# Karpenter v1.15 needs Go >= 1.26.9: its build runs with GOTOOLCHAIN=go1.27.3, which the go command fetches from
# the Go module proxy (about 76 MB, once per machine).
#
# Prints the directory holding both binaries, crds/ and kwok-stages/ (see below) on stdout (the only stdout line);
# progress goes to stderr.
#
#   MUSTER_CONTROL_PLANE_CACHE  root of the cache (default: $XDG_CACHE_HOME/muster or ~/.cache/muster)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The versions are read from the wrapper modules, so go.mod is the single place they are pinned.
karpenter_version="$(awk '$1 == "require" && $2 == "sigs.k8s.io/karpenter" {print $3}' "$here/karpenter/go.mod")"
kwok_version="$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")"
if [[ -z "$karpenter_version" || -z "$kwok_version" ]]; then
  echo "autoscaling.sh: cannot read pinned versions from $here/{karpenter,kwok}/go.mod" >&2
  exit 1
fi

cache_root="${MUSTER_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/muster}"
bin_dir="$cache_root/autoscaling/karpenter-${karpenter_version}_kwok-${kwok_version}"

export GOFLAGS="-mod=mod -trimpath"

build() { # build <module dir> <package> <output name> <toolchain> <ldflags>
  local dir="$1" pkg="$2" out="$3" toolchain="$4" ldflags="$5"
  if [[ -x "$bin_dir/$out" ]]; then
    echo "autoscaling.sh: $out is cached in $bin_dir" >&2
    return
  fi
  echo "autoscaling.sh: building $out (cold: several minutes on 2 cores)" >&2
  local start=$SECONDS
  mkdir -p "$bin_dir"
  # Build into a temporary name and rename, so an interrupted build never leaves a truncated binary in the cache.
  (cd "$dir" && GOTOOLCHAIN="$toolchain" go build -ldflags "-s -w $ldflags" -o "$bin_dir/.$out.tmp.$$" "$pkg")
  mv -f "$bin_dir/.$out.tmp.$$" "$bin_dir/$out"
  echo "autoscaling.sh: built $out in $((SECONDS - start)) s ($(du -h "$bin_dir/$out" | cut -f1))" >&2
}

build "$here/kwok" sigs.k8s.io/kwok/cmd/kwok kwok local ""
build "$here/karpenter" sigs.k8s.io/karpenter/kwok karpenter-kwok go1.27.3 ""

# The manifests the tests install or hand to the binaries, copied from the modules so they match the versions run:
#   crds/         Karpenter's CRDs as its KWOK provider's chart ships them (NodePool, NodeClaim with the
#                 karpenter.kwok.sh label rules, NodeOverlay, CapacityBuffer) and the KWOKNodeClass CRD
#   kwok-stages/  KWOK's "fast" Stage set (node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete,
#                 pod-delete): KWOK v0.8 has no built-in stages, it runs what its --config files hold
# kwok-stages/ is written last, so its presence marks a complete copy.
if [[ ! -f "$bin_dir/kwok-stages/pod-delete.yaml" ]]; then
  karpenter_dir="$(cd "$here/karpenter" && GOTOOLCHAIN=go1.27.3 go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)"
  kwok_dir="$(cd "$here/kwok" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  tmp="$bin_dir/.manifests.tmp.$$"
  mkdir -p "$tmp/crds" "$tmp/kwok-stages"
  cp "$karpenter_dir"/kwok/charts/crds/*.yaml "$karpenter_dir"/kwok/apis/crds/*.yaml "$tmp/crds/"
  cp "$kwok_dir"/kustomize/stage/node/fast/node-initialize.yaml \
    "$kwok_dir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$kwok_dir"/kustomize/stage/pod/fast/pod-ready.yaml \
    "$kwok_dir"/kustomize/stage/pod/fast/pod-complete.yaml \
    "$kwok_dir"/kustomize/stage/pod/fast/pod-delete.yaml \
    "$tmp/kwok-stages/"
  # The module cache is read-only.
  chmod -R u+w "$tmp"
  rm -rf "$bin_dir/crds" "$bin_dir/kwok-stages"
  mv "$tmp/crds" "$bin_dir/crds"
  mv "$tmp/kwok-stages" "$bin_dir/kwok-stages"
  rmdir "$tmp"
  echo "autoscaling.sh: copied the CRDs and KWOK stages into $bin_dir" >&2
fi

echo "$bin_dir"
