#!/bin/sh
# Build a copy of runmcp_fast whose compiled modules carry clang's libFuzzer coverage
# (-fsanitize=fuzzer-no-link), so that atheris is guided inside the C parts too:
#
#   tests/fuzz/build_instrumented.sh [DIR]          # default /tmp/runmcp-fuzz-build
#   RUNMCP_FUZZ_BUILD=DIR python tests/fuzz/fuzz_router.py ...
#
# Needs clang (apt-get install clang). The copy is of this checkout as it is now:
# rebuild after changing the sources.
set -eu
out=${1:-/tmp/runmcp-fuzz-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/../main/.venv/bin/python}
[ -x "$python" ] || python=python3
mkdir -p "$out"
rm -rf "$out/runmcp_fast" "$out/third_party"
cp -a "$root/setup.py" "$root/runmcp_fast" "$root/third_party" "$out/"
find "$out/runmcp_fast" -name '*.so' -delete
cd "$out"
CC=clang LDSHARED="clang -shared" CFLAGS="-fsanitize=fuzzer-no-link -O1" \
    "$python" setup.py -q build_ext --inplace
# clang's libFuzzer as a shared library, preloaded by harness.py: the modules' coverage
# hooks need its symbols global when they load (atheris then uses it, not its own copy).
archive=$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)
[ -f "$archive" ] || archive=$(find /usr/lib -name 'libclang_rt.fuzzer_no_main-x86_64.a' | head -1)
clang -shared -fPIC -Wl,--whole-archive "$archive" -Wl,--no-whole-archive -lstdc++ -lpthread \
    -o "$out/libfuzzer.so"
echo "$out"
