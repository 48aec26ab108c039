#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZTIME (default 60s), one after another. Each must end without a
# failure; a failing input is written by "go test" under the package's testdata/fuzz/<FuzzName>/, where it
# becomes a regression test that plain "go test" (and so "make test") runs from then on.
#
#   FUZZTIME=10m hack/fuzz.sh            # longer
#   FUZZ_PARALLEL=4 hack/fuzz.sh         # more workers (default: go's, one per CPU)
#   hack/fuzz.sh FuzzParseCertChain      # only the named targets
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-60s}"
GO="${GO:-go}"
parallel=()
if [[ -n "${FUZZ_PARALLEL:-}" ]]; then
  parallel=(-parallel "$FUZZ_PARALLEL")
fi

# Every Fuzz* function in a *_fuzz_test.go file, as "package-dir target".
mapfile -t targets < <(git ls-files --cached --others --exclude-standard '*_fuzz_test.go' | while read -r f; do
  sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f" | while read -r name; do
    echo "./$(dirname "$f") $name"
  done
done | sort -u)

if [[ ${#targets[@]} -eq 0 ]]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

failed=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  if [[ $# -gt 0 ]] && ! printf '%s\n' "$@" | grep -qx "$name"; then
    continue
  fi
  echo "=== $name ($pkg) for $FUZZTIME"
  if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "$pkg"; then
    failed+=("$name")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under testdata/fuzz/; add them to the commit as regression tests)" >&2
  exit 1
fi
echo "fuzzing: no failures"
