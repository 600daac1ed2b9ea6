#!/usr/bin/env bash
# Installs, builds with warnings as errors, and runs every test: unit and
# end-to-end suites, the style checks (clang-format, clang-tidy), again under
# ASan+UBSan, and the frame-decoder and control-message fuzzers for a short
# time each.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says when it starts, so a slow run shows where its time went.
phase() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }
phase "install"
./scripts/install-deps.sh
phase "build (warnings are errors)"
BUILD_DIR=build-ci ./scripts/build.sh --werror -Dbuildtype=debugoptimized
phase "tests"
meson test -C build-ci --print-errorlogs --num-processes 2
phase "style"
BUILD_DIR=build-ci ./scripts/check-style.sh
phase "ASan + UBSan build"
BUILD_DIR=build-asan ./scripts/build.sh --werror -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
# Stack use after return too: a thread still reading a frame that returned
# (a departure's digester once) should fail here, not as differing digests.
phase "ASan + UBSan tests"
ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite e2e-repeat
if command -v clang++ >/dev/null; then
  phase "libFuzzer: frame decoder, 20 s"
  rm -rf build-fuzz
  CXX=clang++ meson setup build-fuzz -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false -Dfuzz=enabled >/dev/null
  ninja -C build-fuzz tests/fuzz_frame tests/fuzz_control  # the fuzz targets only: the suites ran above
  mkdir -p build-fuzz/corpus build-fuzz/corpus_control
  ./build-fuzz/tests/fuzz_frame -max_total_time=20 -print_final_stats=1 build-fuzz/corpus tests/fuzz/corpus 2>&1 | tail -3
  phase "libFuzzer: JSON control messages, 10 s"
  ./build-fuzz/tests/fuzz_control -max_total_time=10 -print_final_stats=1 build-fuzz/corpus_control \
    tests/fuzz/corpus_control 2>&1 | tail -3
fi
phase "done"
# One closing line over both test runs, counted from meson's own logs.
python3 - build-ci build-asan <<'PY'
import json, sys
passed = failed = skipped = 0
for d in sys.argv[1:]:
    for line in open(f"{d}/meson-logs/testlog.json"):
        r = json.loads(line)["result"]
        if r == "OK": passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
