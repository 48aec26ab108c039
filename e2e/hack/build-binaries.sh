#!/usr/bin/env bash
# Builds the real control-plane binaries the e2e suite and the benchmarks run against, from the Go modules
# pinned in e2e/go.mod, into a cache outside the repository, and only when missing. The first build takes
# about 12-15 minutes on 2 cores (kube-apiserver and kubeadm are large); later runs reuse the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${K8SCRYPTO_E2E_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/k8scrypto-e2e/v1.37.2}"
mkdir -p "$bin_dir"
build() { # name package
  if [ -x "$bin_dir/$1" ]; then return; fi
  echo "building $1 into $bin_dir (first time only)" >&2
  go build -trimpath -o "$bin_dir/$1.tmp" "$2"
  mv "$bin_dir/$1.tmp" "$bin_dir/$1"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubeadm k8s.io/kubernetes/cmd/kubeadm
echo "$bin_dir"
