#!/usr/bin/env bash
# Bootstrap the first control-plane node: k8scrypto writes (or checks and reuses) every certificate, key,
# the encryption-at-rest config and the kubeconfigs, and renders the kubeadm configuration wired to them;
# kubeadm then builds the control plane on that PKI and generates none of it.
#
# Usage: bootstrap-control-plane.sh [KUBEADM_CONFIG]   (default /etc/k8scrypto/kubeadm-config.yaml)
# Environment: K8SCRYPTO (default k8scrypto), KUBEADM (default kubeadm),
#              RENDERED (default /etc/kubernetes/kubeadm-config.yaml).
# Safe to re-run: k8scrypto reuses valid files and fails, changing nothing, on anything it cannot reuse.
set -euo pipefail

config=${1:-/etc/k8scrypto/kubeadm-config.yaml}
rendered=${RENDERED:-/etc/kubernetes/kubeadm-config.yaml}
k8scrypto=${K8SCRYPTO:-k8scrypto}
kubeadm=${KUBEADM:-kubeadm}

if [[ ! -r $config ]]; then
	echo "bootstrap: cannot read $config" >&2
	exit 1
fi

# 1. Certificates, service-account keys, encryption config, kubeconfigs and the rendered kubeadm config,
#    written in one crash-safe transaction.
"$k8scrypto" init --config "$config" --kubeadm-config-out "$rendered"

# 2. k8scrypto validates the fields it uses and carries the others over; kubeadm validates the whole file, so
#    a mistake in a field only kubeadm reads stops here, before anything is started.
"$kubeadm" config validate --config "$rendered"

# 3. Everything is in place: kubeadm verifies and reuses it, then writes the static pods and starts the cluster.
"$kubeadm" init --config "$rendered"

# 4. Certificates that are due are renewed by the daily timer (examples/systemd) or cron (examples/crontab).
"$k8scrypto" certs check-expiration --config "$rendered"
