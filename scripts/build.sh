#!/usr/bin/env bash
# Configures and builds bnf into BUILD_DIR (default: build). Extra args go to meson setup.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
[ $# -gt 0 ] || set -- -Dbuildtype=release
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir"
