package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// MissingDirs lists dir and those of its ancestors that do not exist yet, parents first (deepest last):
// what EnsureDir is about to create, so that a caller can remove them again if a later step fails. A
// symbolic link counts as existing.
func MissingDirs(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		_, err := os.Lstat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append([]string{d}, missing...)
		if filepath.Dir(d) == d {
			break
		}
	}
	return missing, nil
}
