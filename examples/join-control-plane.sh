#!/usr/bin/env bash
# Join a second (third, ...) control-plane node: k8scrypto installs the keys the control planes share (the
# three CAs, sa.key/sa.pub and the encryption config, which kubeadm's own download leaves out), writes this
# node's own certificates and kubeconfigs, then kubeadm joins it and generates none of it.
#
# Usage: join-control-plane.sh KUBEADM_CONFIG
#   KUBEADM_CONFIG is the cluster's ClusterConfiguration with this node's JoinConfiguration (nodeRegistration.name,
#   controlPlane.localAPIEndpoint.advertiseAddress, discovery.bootstrapToken.token): k8scrypto then renders a
#   JoinConfiguration pinned to the cluster CA, and "kubeadm join --config" needs nothing else. A copy of
#   the first node's InitConfiguration file with this node's name and address works too; then ENDPOINT and
#   TOKEN give kubeadm join's flags.
# The shared keys come from one of:
#   BUNDLE and BUNDLE_KEY_FILE             a file made by "k8scrypto certs export" on a control-plane node
#                                          (carried by cloud-init, a secrets store or scp), and its key file
#   JOIN_KUBECONFIG and CERTIFICATE_KEY    kube-system/kubeadm-certs, uploaded by "k8scrypto init phase
#                                          upload-certs" (or kubeadm's), readable with that kubeconfig
# Always: CA_CERT_HASH (sha256:..., the cluster CA's pin). Without a JoinConfiguration: ENDPOINT (the
# controlPlaneEndpoint, host:port) and TOKEN (a bootstrap token for kubeadm join). Optional: K8SCRYPTO,
# KUBEADM, RENDERED (default /etc/kubernetes/kubeadm-config.yaml), ADVERTISE_ADDRESS (this node's apiserver
# address, without a JoinConfiguration).
# Safe to re-run: identical shared files are kept, and a different CA already on the node stops it (exit 3).
set -euo pipefail

config=${1:-/etc/k8scrypto/kubeadm-config.yaml}
rendered=${RENDERED:-/etc/kubernetes/kubeadm-config.yaml}
k8scrypto=${K8SCRYPTO:-k8scrypto}
kubeadm=${KUBEADM:-kubeadm}
: "${CA_CERT_HASH:?the cluster CA pin, sha256:HEX}"

if [[ ! -r $config ]]; then
	echo "join: cannot read $config" >&2
	exit 1
fi
join_config=false
if grep -q '^kind: JoinConfiguration$' "$config"; then
	join_config=true
else
	: "${ENDPOINT:?the control-plane endpoint, host:port}" "${TOKEN:?a bootstrap token}"
fi

# 1. The shared keys, pinned to the cluster's CA, in one crash-safe transaction.
if [[ -n ${BUNDLE:-} ]]; then
	"$k8scrypto" certs import --config "$config" --in "$BUNDLE" --key-file "${BUNDLE_KEY_FILE:?the bundle key file}" --ca-cert-hash "$CA_CERT_HASH"
else
	"$k8scrypto" join phase download-certs --config "$config" --kubeconfig "${JOIN_KUBECONFIG:?a kubeconfig that can read kube-system/kubeadm-certs, or BUNDLE}" \
		--certificate-key "${CERTIFICATE_KEY:?the certificate key upload-certs printed}" --ca-cert-hash "$CA_CERT_HASH"
fi

# 2. This node's own certificates and kubeconfigs, signed by the shared CAs (which init reuses); not
#    kubelet.conf (the kubelet's TLS bootstrap writes it during kubeadm join, whose preflight refuses an
#    existing one) nor super-admin.conf (the first node's). With a JoinConfiguration init leaves both out
#    itself and renders a JoinConfiguration.
if $join_config; then
	"$k8scrypto" init --config "$config" --kubeadm-config-out "$rendered"
else
	"$k8scrypto" init --config "$config" --kubeadm-config-out "$rendered" --skip-phases kubeconfig/kubelet,kubeconfig/super-admin
fi

# 3. kubeadm finds every file in place and reuses it (no certificate key: the keys are already here).
if $join_config; then
	"$kubeadm" join --config "$rendered"
	exit
fi
args=(join "$ENDPOINT" --token "$TOKEN" --discovery-token-ca-cert-hash "$CA_CERT_HASH" --control-plane)
if [[ -n ${ADVERTISE_ADDRESS:-} ]]; then
	args+=(--apiserver-advertise-address "$ADVERTISE_ADDRESS")
fi
"$kubeadm" "${args[@]}"
