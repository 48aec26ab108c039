package phases

import (
	"fmt"
	"os"
)

// readRegular reads a file k8scrypto manages, refusing directories and devices.
func readRegular(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, errNotRegular)
	}
	return os.ReadFile(path) // #nosec G304 -- a file of the operator's certificate or kubeconfig directory
}
