// Package kubeadmcompat holds only tests: they run kubeadm's own code (its config validation, its certs and
// kubeconfig phases, its static-pod manifest builder) against what "k8scrypto init" writes. kubeadm's
// packages are heavy to compile, so they are kept out of every other test binary.
package kubeadmcompat
