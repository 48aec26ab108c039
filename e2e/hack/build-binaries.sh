#!/usr/bin/env bash
# Builds the real control-plane binaries the e2e suite and the benchmarks run against, from the Go modules
# pinned in e2e/go.mod, into a cache outside the repository, and only when missing or stale. The first build
# takes 15-40 minutes on 2 cores (38 measured on busy ones) (kube-apiserver, kube-controller-manager and kubeadm are large); later runs reuse the cache.
#
# The cache directory is named after one Kubernetes version, so it cannot tell by itself that e2e/go.mod
# moved on: each cached binary is checked against the pins before it is reused, and rebuilt on mismatch.
# `kube-apiserver --version` of a plain `go build` says "v0.0.0-master" (the version is stamped only by
# Kubernetes' own build scripts), so the check reads the module path, version and go.sum hash that the Go
# toolchain embeds in every binary (`go version -m`) and that it was built static, and the version each
# reports. They are built exactly as build-node-image.sh builds the node's (CGO off, -trimpath, Kubernetes'
# version ldflags from k8s-ldflags.sh), so the node image's build reuses these compiles and only links.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=k8s-ldflags.sh
source hack/k8s-ldflags.sh
bin_dir="${K8SCRYPTO_E2E_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/k8scrypto-e2e/v1.37.2}"
mkdir -p "$bin_dir"

# pinned MODULE: "module version sum" as e2e/go.mod and go.sum pin it.
pinned() { go list -m -f '{{.Path}} {{.Version}} {{.Sum}}' "$1"; }

# built BINARY: "module version sum" of the main module the binary was built from ("" if unreadable).
built() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $2, $3, $4; exit }'; }

# stale NAME MODULE: prints why the cached binary must be rebuilt, nothing when it is current.
stale() {
  local bin="$bin_dir/$1" want got
  if [ ! -x "$bin" ]; then echo "missing"; return; fi
  want="$(pinned "$2")"
  got="$(built "$bin")"
  if [ "$got" != "$want" ]; then echo "built from ${got:-(no build info)}, e2e/go.mod pins $want"; return; fi
  if ! go version -m "$bin" | grep -qP '^\s+build\s+CGO_ENABLED=0$'; then echo "not built static (CGO_ENABLED=0)"; return; fi
  local v reports
  v="$(echo "$want" | cut -d' ' -f2)"
  case "$1" in
  etcd) reports="$("$bin" --version 2>/dev/null | head -n 1)"; [ "$reports" = "etcd Version: ${v#v}" ] ;;
  kubeadm) reports="$("$bin" version -o short 2>/dev/null)"; [ "$reports" = "$v" ] ;;
  *) reports="$("$bin" --version 2>/dev/null)"; [ "$reports" = "Kubernetes $v" ] ;;
  esac || echo "reports version [$reports], want $v"
}

build() { # name package module ldflags
  local why
  why="$(stale "$1" "$3")"
  if [ -z "$why" ]; then return; fi
  echo "building $1 into $bin_dir ($why)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "$4" -o "$bin_dir/$1.tmp" "$2"
  mv "$bin_dir/$1.tmp" "$bin_dir/$1"
  why="$(stale "$1" "$3")"
  if [ -n "$why" ]; then
    echo "error: $bin_dir/$1 was just built but still does not match e2e/go.mod: $why" >&2
    exit 1
  fi
}
k8s_flags="$(k8s_ldflags "$(pinned k8s.io/kubernetes | cut -d' ' -f2)")"
build etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes "$k8s_flags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes "$k8s_flags"
build kubeadm k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes "$k8s_flags"
echo "$bin_dir"
