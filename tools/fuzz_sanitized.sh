#!/usr/bin/env bash
# Fuzz the compiled codec (logq/codec/compiled.pyx) built with AddressSanitizer and UBSan.
#
#   tools/fuzz_sanitized.sh [SECONDS]      (default 300 s; FUZZ_SEED=N repeats a run)
#
# Builds the extension with -fsanitize=address,undefined into a temporary copy of the
# package (the work tree is not touched), then runs tools/fuzz_codec.py --loop against it
# with gcc's libasan preloaded, PYTHONMALLOC=malloc (so ASan sees every Python allocation)
# and UBSan aborting at its first report. Needs gcc, the Python headers, and Cython and
# atheris in the virtualenv (installed here when missing). Prints the executions and the
# findings; exits non-zero when the fuzzer or a sanitizer reported a crash. Crash inputs are
# kept in the temporary directory, whose path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-300}"
shift || true
PY="${PYTHON:-.venv/bin/python}"
CC="${CC:-gcc}"

"$PY" -c "import Cython" 2>/dev/null || "$PY" -m pip install --quiet "Cython>=3.0"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/logq-fuzz-asan-XXXXXX")"
echo "fuzz_sanitized: working in $WORK"
mkdir -p "$WORK/src"
cp -r setup.py pyproject.toml MANIFEST.in README.md logq "$WORK/src/"
find "$WORK/src/logq" \( -name '*.so' -o -name '*.c' -o -name __pycache__ \) -prune -exec rm -rf {} +

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(
    cd "$WORK/src"
    CC="$CC" CFLAGS="$SAN" LDFLAGS="$SAN" "$OLDPWD/$PY" setup.py -q build_ext --inplace --build-temp "$WORK/build"
) > "$WORK/build.log" 2>&1
SO="$(ls "$WORK"/src/logq/codec/compiled*.so 2>/dev/null || true)"
if [ -z "$SO" ]; then
    echo "fuzz_sanitized: the sanitized build failed; see $WORK/build.log" >&2
    tail -20 "$WORK/build.log" >&2
    exit 1
fi
LIBASAN="$("$CC" -print-file-name=libasan.so)"
echo "fuzz_sanitized: built $SO; preloading $LIBASAN; fuzzing for ${SECONDS_TO_RUN}s"

# The fuzz loop is tools/fuzz_codec.py --loop (random mutation of valid batches, 60% of them
# with length and CRC repaired so they reach the record parser). Not atheris's libFuzzer:
# with gcc's libasan preloaded it gets no coverage feedback (libasan provides the coverage
# hooks) and atheris's own asan_with_fuzzer.so is clang's runtime, which refuses a gcc build.
set +e
LD_PRELOAD="$LIBASAN" \
    PYTHONMALLOC=malloc \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:handle_segv=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    PYTHONPATH="$WORK/src" LOGQ_PURE_PYTHON=0 \
    "$PY" tools/fuzz_codec.py --loop "$SECONDS_TO_RUN" "${FUZZ_SEED:-$RANDOM}" > "$WORK/fuzz.log" 2>&1
rc=$?
set -e
grep -E "^fuzz_codec|ERROR: (Address|Undefined)|runtime error|SUMMARY" "$WORK/fuzz.log" || true
findings=$(grep -cE "ERROR: (Address|Undefined)Sanitizer|runtime error|contract broken|Traceback" "$WORK/fuzz.log" || true)
echo "fuzz_sanitized: exit $rc, $findings finding(s); log $WORK/fuzz.log"
if ! grep -q "fuzz_codec: codec compiled" "$WORK/fuzz.log"; then
    echo "fuzz_sanitized: the harness did not use the compiled codec" >&2
    exit 1
fi
exit $rc
