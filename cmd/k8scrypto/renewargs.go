package main

import (
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
)

// renewArgs are the flags of this run that decide certificate SANs and key algorithm, as "renew certs"
// takes them (it shares clusterFlags). The fix init suggests for a certificate lacking SANs repeats them:
// without them renew keeps the old certificate's SANs and init would fail again. Flags set through
// K8SCRYPTO_* variables are rendered as flags, so the command works in any environment.
func (f *clusterFlags) renewArgs() []string {
	var args []string
	if f.configFile != "" {
		args = append(args, "--config", pki.AbsPath(f.configFile)) // the command may be run from another directory
	}
	o := f.overrides
	add := func(flag, value string) {
		if value != "" {
			args = append(args, flag, value)
		}
	}
	add("--node-name", o.NodeName)
	add("--advertise-address", o.AdvertiseAddress)
	add("--control-plane-endpoint", o.ControlPlaneEndpoint)
	add("--service-cidr", o.ServiceCIDR)
	add("--service-dns-domain", o.ServiceDNSDomain)
	add("--apiserver-cert-extra-sans", strings.Join(o.APIServerCertSANs, ","))
	add("--encryption-algorithm", o.EncryptionAlgorithm)
	return args
}
