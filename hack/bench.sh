#!/usr/bin/env bash
# make bench-kubeadm (the second half of "make bench", after the Go benchmarks): times k8scrypto against
# the real kubeadm v1.37.2 on the same configuration (see docs/performance.md). kubeadm comes from the e2e
# binary cache ("make e2e-binaries" builds it once); k8scrypto is built here exactly as "make build" builds
# it. Everything runs in a temporary directory: kubeadm is chrooted there with --rootfs and never sees the
# real /etc/kubernetes.
#   hack/bench.sh [-runs N] [-format markdown] [-only REGEXP] [-keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${K8SCRYPTO_E2E_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/k8scrypto-e2e/v1.37.2}"
kubeadm="$bin_dir/kubeadm"
if [ ! -x "$kubeadm" ]; then
  echo "error: $kubeadm not found: run \"make e2e-binaries\" (or set K8SCRYPTO_E2E_BIN)" >&2
  exit 1
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
go build -trimpath -o "$out/k8scrypto" ./cmd/k8scrypto
go build -o "$out/bench" ./hack/bench
if command -v uptime >/dev/null; then
  echo "machine: $(nproc) CPUs,$(uptime | sed 's/.*load average/ load average/')" >&2
fi
"$out/bench" -kubeadm "$kubeadm" -k8scrypto "$out/k8scrypto" "$@"
