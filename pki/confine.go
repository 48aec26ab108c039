package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CheckNoLinksBelow refuses path when a directory between root and path (path's parent included, path
// itself excluded) is a symbolic link or not a directory: a link such as pki/etcd -> /elsewhere would
// send the etcd keys out of the tree. root itself may be a link: operators mount or link
// /etc/kubernetes/pki elsewhere on purpose, and the whole tree moves with it. Components that do not
// exist yet are fine (they are created as real directories). A path outside root is not checked. The
// check uses Lstat, so it does not stop a local attacker racing to swap a directory after it; such an
// attacker needs write access to the tree, which checkTarget already refuses for private files.
func CheckNoLinksBelow(root, path string) error {
	if root == "" {
		return nil
	}
	absRoot, abs := filepath.Clean(AbsPath(root)), filepath.Clean(AbsPath(path))
	rel, err := filepath.Rel(absRoot, filepath.Dir(abs))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil
	}
	cur := absRoot
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		info, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case info.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("refusing to write %s: %s is a symbolic link inside %s, and k8scrypto follows a link only for that directory itself; replace the link with a real directory (move the files into %s)", path, cur, root, cur)
		case !info.IsDir():
			return fmt.Errorf("refusing to write %s: %s is not a directory; move it away", path, cur)
		}
	}
	return nil
}
