#!/usr/bin/env bash
# Join a second (third, ...) control-plane node: k8scrypto installs the keys the control planes share (the
# three CAs, sa.key/sa.pub and the encryption config, which kubeadm's own download leaves out), writes this
# node's own certificates and kubeconfigs, then kubeadm joins it and generates none of it.
#
# Usage: join-control-plane.sh KUBEADM_CONFIG
#   KUBEADM_CONFIG is this node's copy of the cluster's kubeadm configuration (its nodeRegistration.name and
#   localAPIEndpoint.advertiseAddress are this node's), as for bootstrap-control-plane.sh.
# The shared keys come from one of:
#   BUNDLE and BUNDLE_KEY_FILE             a file made by "k8scrypto certs export" on a control-plane node
#                                          (carried by cloud-init, a secrets store or scp), and its key file
#   JOIN_KUBECONFIG and CERTIFICATE_KEY    kube-system/kubeadm-certs, uploaded by "k8scrypto init phase
#                                          upload-certs" (or kubeadm's), readable with that kubeconfig
# Always: CA_CERT_HASH (sha256:..., the cluster CA's pin), ENDPOINT (the controlPlaneEndpoint, host:port), TOKEN
# (a bootstrap token for kubeadm join). Optional: K8SCRYPTO, KUBEADM, RENDERED (default
# /etc/kubernetes/kubeadm-config.yaml), ADVERTISE_ADDRESS (this node's apiserver address).
# Safe to re-run: identical shared files are kept, and a different CA already on the node stops it (exit 3).
set -euo pipefail

config=${1:-/etc/k8scrypto/kubeadm-config.yaml}
rendered=${RENDERED:-/etc/kubernetes/kubeadm-config.yaml}
k8scrypto=${K8SCRYPTO:-k8scrypto}
kubeadm=${KUBEADM:-kubeadm}
: "${CA_CERT_HASH:?the cluster CA pin, sha256:HEX}" "${ENDPOINT:?the control-plane endpoint, host:port}" "${TOKEN:?a bootstrap token}"

if [[ ! -r $config ]]; then
	echo "join: cannot read $config" >&2
	exit 1
fi

# 1. The shared keys, pinned to the cluster's CA, in one crash-safe transaction.
if [[ -n ${BUNDLE:-} ]]; then
	"$k8scrypto" certs import --config "$config" --in "$BUNDLE" --key-file "${BUNDLE_KEY_FILE:?the bundle key file}" --ca-cert-hash "$CA_CERT_HASH"
else
	"$k8scrypto" join phase download-certs --config "$config" --kubeconfig "${JOIN_KUBECONFIG:?a kubeconfig that can read kube-system/kubeadm-certs, or BUNDLE}" \
		--certificate-key "${CERTIFICATE_KEY:?the certificate key upload-certs printed}" --ca-cert-hash "$CA_CERT_HASH"
fi

# 2. This node's own certificates and kubeconfigs, signed by the shared CAs (which init reuses).
"$k8scrypto" init --config "$config" --kubeadm-config-out "$rendered"

# 3. kubeadm finds every file in place and reuses it (no --certificate-key: the keys are already here).
args=(join "$ENDPOINT" --token "$TOKEN" --discovery-token-ca-cert-hash "$CA_CERT_HASH" --control-plane)
if [[ -n ${ADVERTISE_ADDRESS:-} ]]; then
	args+=(--apiserver-advertise-address "$ADVERTISE_ADDRESS")
fi
"$kubeadm" "${args[@]}"
