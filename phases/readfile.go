package phases

import "k8scrypto.dev/k8scrypto/pki"

// readRegular reads a file k8scrypto manages, refusing directories, FIFOs (which would hang the run) and
// devices, and files too large to be a key, certificate or kubeconfig.
func readRegular(path string) ([]byte, error) {
	return pki.ReadFile(path, pki.MaxConfigSize)
}
