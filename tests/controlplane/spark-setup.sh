#!/usr/bin/env bash
# Installs the real Spark client muster's tests submit with: PyPI's `pyspark`, which ships the full Spark jar set
# (spark-kubernetes and the fabric8 Kubernetes client included), into a virtualenv in a cache outside the checkout,
# keyed by the pinned version. Idempotent: once installed it only checks and prints.
#
#   spark-setup.sh [VERSION|all]   VERSION defaults to the first pinned version; `all` installs every pinned one
#                                  and prints nothing.
#
# Prints the virtualenv directory on stdout (the only stdout line; `bin/spark-submit` and `bin/python` are in it);
# progress and errors go to stderr.
#
#   MUSTER_CONTROL_PLANE_CACHE  root of the cache (default: $XDG_CACHE_HOME/muster or ~/.cache/muster), shared with
#                               build.sh
set -euo pipefail

# The Spark lines users run: 3.5 (the operations guide's; spark.kubernetes.scheduler.name exists since 3.3) and
# 4.x (Java 17 or newer, Python 3.9 or newer). The first is the default; the executor-shape matrix tests both.
supported_versions=(3.5.9 4.1.1)
pyspark_version="${1:-${supported_versions[0]}}"
if [[ "$pyspark_version" == all ]]; then
  for version in "${supported_versions[@]}"; do bash "$0" "$version" >/dev/null; done
  exit 0
fi
if [[ " ${supported_versions[*]} " != *" $pyspark_version "* ]]; then
  echo "spark-setup.sh: pyspark $pyspark_version is not one of the pinned versions: ${supported_versions[*]}" >&2
  exit 1
fi

cache_root="${MUSTER_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/muster}"
venv="$cache_root/pyspark-$pyspark_version"

# spark-submit runs on the machine's Java; fail here, with the fix, rather than deep inside a test.
if ! java_version="$(java -version 2>&1 | head -n 1)"; then
  echo "spark-setup.sh: no working 'java' on PATH: Spark $pyspark_version needs a JDK or JRE 17" \
    "(Debian: apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "spark-setup.sh: no 'python3' on PATH: pyspark needs Python 3.8 or newer" >&2
  exit 1
fi

mkdir -p "$cache_root"
# Test binaries may run concurrently (cargo test runs them one after another, nextest does not): one installer at
# a time, the others wait and then find it installed.
exec 9>"$cache_root/.pyspark-$pyspark_version.lock"
flock 9

# The marker is written last, so a half-finished install (interrupted, out of disk) is never taken as done.
marker="$venv/.muster-installed"
if [[ ! -f "$marker" ]]; then
  echo "spark-setup.sh: installing pyspark $pyspark_version into $venv (cold: about a minute, ~320 MB download)" >&2
  start=$SECONDS
  # A virtualenv cannot be moved after creation (absolute paths in its scripts), so it is built in place and a
  # leftover from an interrupted install is wiped first.
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pyspark==$pyspark_version" >&2
  touch "$marker"
  echo "spark-setup.sh: installed pyspark $pyspark_version in $((SECONDS - start)) s" \
    "($(du -sh "$venv" | cut -f1))" >&2
fi

if [[ ! -x "$venv/bin/spark-submit" ]]; then
  echo "spark-setup.sh: $venv/bin/spark-submit is missing although pyspark is marked installed;" \
    "delete $venv and retry" >&2
  exit 1
fi
echo "spark-setup.sh: pyspark $pyspark_version in $venv, java: $java_version" >&2
echo "$venv"
