#!/usr/bin/env bash
# Restart the control-plane static pods after "k8scrypto renew certs" replaced certificates, so that the
# components re-read them (the API server reloads its serving certificate by itself; the controller manager,
# scheduler and etcd read theirs at start). The kubelet recreates each stopped container at once.
# Used as: k8scrypto renew certs --on-renew /usr/local/sbin/k8scrypto-restart-control-plane
set -euo pipefail

crictl=${CRICTL:-crictl}
for name in kube-apiserver kube-controller-manager kube-scheduler etcd; do
	for id in $("$crictl" ps --name "^${name}\$" --quiet); do
		"$crictl" stop "$id" >/dev/null
		echo "restarted $name ($id)"
	done
done
