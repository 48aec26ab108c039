#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZTIME (default 60s), one after another. Each must end without a
# failure; a failing input is written by "go test" under the package's testdata/fuzz/<FuzzName>/, where it
# becomes a regression test that plain "go test" (and so "make test") runs from then on.
#
#
# Each new interesting input is minimized for at most FUZZMINIMIZETIME (default 1s): with Go's default of 60s
# per input a young corpus spends the whole minute minimizing (FuzzParsePrivateKey made 13 executions in 30s).
# At the end a table gives each target's executions and new interesting inputs, from go's last progress line.
#
#   FUZZTIME=10m hack/fuzz.sh            # longer
#   FUZZ_PARALLEL=4 hack/fuzz.sh         # more workers (default: go's, one per CPU)
#   FUZZMINIMIZETIME=10s hack/fuzz.sh    # more time to minimize each new input
#   hack/fuzz.sh FuzzParseCertChain      # only the named targets
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-60s}"
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-1s}"
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

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  if [[ $# -gt 0 ]] && ! printf '%s\n' "$@" | grep -qx "$name"; then
    continue
  fi
  echo "=== $name ($pkg) for $FUZZTIME"
  if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "${parallel[@]}" "$pkg" 2>&1 | tee "$log"; then
    failed+=("$name")
  fi
  # go's progress lines: "fuzz: elapsed: 1m0s, execs: 123456 (2057/sec), new interesting: 12 (total: 40)".
  last="$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n 1 || true)"
  execs="$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")"
  fresh="$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")"
  summary+=("$(printf '%-22s %-20s %12s %16s' "$name" "$pkg" "${execs:-?}" "${fresh:-?}")")
done

echo
printf '%-22s %-20s %12s %16s\n' TARGET PACKAGE EXECUTIONS "NEW INTERESTING"
printf '%s\n' "${summary[@]}"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under testdata/fuzz/; add them to the commit as regression tests)" >&2
  exit 1
fi
echo "fuzzing: no failures"
