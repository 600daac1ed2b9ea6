#!/usr/bin/env bash
# Style as CI enforces it: every C and C++ file formatted as .clang-format
# says (clang-format --dry-run --Werror), and clang-tidy's checks
# (.clang-tidy) clean over the engine, kmod-helpers, qemu-glue and cli, with
# warnings as errors. BUILD_DIR (default build-ci) supplies
# compile_commands.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-ci}
echo "== clang-format"
git ls-files '*.cpp' '*.hpp' '*.h' '*.c' | xargs clang-format --dry-run --Werror
echo "   formatted: $(git ls-files '*.cpp' '*.hpp' '*.h' '*.c' | wc -l) files"
echo "== clang-tidy (.clang-tidy; warnings are errors)"
[ -f "$BUILD_DIR/compile_commands.json" ] || { echo "no $BUILD_DIR/compile_commands.json: build first"; exit 1; }
files=$(git ls-files 'engine/*.cpp' 'kmod-helpers/*.cpp' 'qemu-glue/*.cpp' 'cli/*.cpp')
# One file per process, two at a time (the CI machine's cores); any warning fails the run.
if ! printf '%s\n' $files | xargs -P "$(nproc)" -n 1 clang-tidy -p "$BUILD_DIR" --quiet >"$BUILD_DIR/clang-tidy.log" 2>&1; then
  grep -E "(warning|error):" "$BUILD_DIR/clang-tidy.log" | sort -u
  echo "clang-tidy: failed (full output: $BUILD_DIR/clang-tidy.log)"
  exit 1
fi
echo "   clean: $(printf '%s\n' $files | wc -l) files"
