#!/usr/bin/env bash
# Installs the cargo tools CI's lint gates need (cargo-deny) from crates.io, once per machine, into a cache outside
# the checkout keyed by the pinned version, so a second run is instant.
#
# Prints the directory holding the tools' binaries on stdout (the only stdout line); progress goes to stderr.
#
#   MUSTER_CONTROL_PLANE_CACHE  root of the cache (default: $XDG_CACHE_HOME/muster or ~/.cache/muster)
set -euo pipefail

# Pinned here, the single place: bump it and the next run installs the new version beside the old one.
cargo_deny_version="0.20.2"

cache_root="${MUSTER_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/muster}"
deny_root="$cache_root/cargo-deny-$cargo_deny_version"

if [[ -x "$deny_root/bin/cargo-deny" ]]; then
  echo "tools.sh: cargo-deny $cargo_deny_version is cached in $deny_root" >&2
else
  echo "tools.sh: installing cargo-deny $cargo_deny_version (cold: several minutes on 2 cores)" >&2
  start=$SECONDS
  # Install into a temporary root and rename, so an interrupted build never leaves a half-installed tool in the cache.
  tmp_root="$cache_root/.cargo-deny-$cargo_deny_version.tmp.$$"
  rm -rf "$tmp_root"
  mkdir -p "$cache_root"
  # Its own target dir: never the checkout's, so the tool's build neither dirties nor invalidates the project's.
  CARGO_TARGET_DIR="$tmp_root.target" \
    cargo install --locked --quiet cargo-deny --version "$cargo_deny_version" --root "$tmp_root" >&2
  rm -rf "$tmp_root.target" "$deny_root"
  mv "$tmp_root" "$deny_root"
  echo "tools.sh: installed cargo-deny in $((SECONDS - start)) s" >&2
fi

echo "$deny_root/bin"
