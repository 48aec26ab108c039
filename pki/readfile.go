package pki

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Size limits for the files k8scrypto reads. Real files are far smaller (a key or a certificate chain is a
// few KiB; a kubeconfig, kubeadm or encryption config some tens of KiB): the limits only stop a file named
// by mistake or malice (a log, a disk image, /dev/zero behind a regular-looking name) from exhausting memory.
const (
	MaxPEMSize    int64 = 1 << 20 // keys, certificates, CA bundles
	MaxConfigSize int64 = 4 << 20 // kubeconfigs, kubeadm configs, encryption configs, journals
)

// ErrNotRegular and ErrTooLarge are wrapped by the errors of ReadFile.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("over the size limit")
)

// ReadFile reads the regular file at path, following symbolic links (kubelet's rotated client certificate,
// kubeconfigs mounted from a ConfigMap, an operator's --config are links), and refuses anything else: a
// FIFO would block the run forever and a device could be read without end. At most limit bytes are read.
func ReadFile(path string, limit int64) ([]byte, error) {
	return readBounded(path, limit, 0)
}

// ReadFileNoFollow is ReadFile for files inside the directories k8scrypto manages, where a symbolic link
// in the last component is refused rather than followed.
func ReadFileNoFollow(path string, limit int64) ([]byte, error) {
	return readBounded(path, limit, noFollow)
}

func readBounded(path string, limit int64, flags int) ([]byte, error) {
	// Stat first, so that a device or socket is not even opened (opening some devices has effects).
	stat := os.Stat
	if flags&noFollow != 0 {
		stat = os.Lstat
	}
	info, err := stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkReadable(path, info, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK: if a FIFO replaced the file since the stat, opening it returns at once instead of
	// waiting for a writer; the fstat below then refuses it. Regular files ignore the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flags, 0) // #nosec G304 -- the caller names the file; it is checked to be a regular file of bounded size
	if err != nil {
		if flags&noFollow != 0 && errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is %w (symbolic links are refused here: replace the link with the file it points to)", path, ErrNotRegular)
		}
		return nil, err
	}
	defer f.Close() // read-only: a failed close loses nothing
	if info, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkReadable(path, info, limit); err != nil {
		return nil, err
	}
	// The file may grow after the fstat: read one byte past the limit to notice.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, int64(len(data)), limit)
	}
	return data, nil
}

func checkReadable(path string, info fs.FileInfo, limit int64) error {
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is %w (symbolic links are refused here: replace the link with the file it points to)", path, ErrNotRegular)
	case !info.Mode().IsRegular():
		return fmt.Errorf("%s is %w but %s (k8scrypto reads only regular files): put the file itself at this path", path, ErrNotRegular, fileKind(info.Mode()))
	}
	if info.Size() > limit {
		return tooLarge(path, info.Size(), limit)
	}
	return nil
}

func tooLarge(path string, size, limit int64) error {
	return fmt.Errorf("%s is too large (%d bytes or more; the limit for this file is %d, %w): check that the path names the right file", path, size, limit, ErrTooLarge)
}

// fileKind names the type of a non-regular file for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// LooseSecretMode reports a file holding a secret (a private key, the encryption config) whose mode lets
// its group or others read or write it; kubeadm writes such files 0600. A file that cannot be examined is
// not reported here: reading it reports that.
func LooseSecretMode(path string) (fs.FileMode, bool) {
	info, err := os.Lstat(path)
	if err != nil || !info.Mode().IsRegular() {
		return 0, false
	}
	return info.Mode().Perm(), info.Mode().Perm()&0o077 != 0
}

// ReadPlanned reads a key file (no-follow, at most MaxPEMSize) as it will be once files are written and
// removed are removed: a planned file's data, fs.ErrNotExist for a removed one, else the file on disk.
// With neither it reads the disk; a dry run passes its plan, to read the state a step would leave.
func ReadPlanned(files []File, removed []string) func(path string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		for _, f := range files {
			if filepath.Clean(f.Path) == filepath.Clean(path) {
				return f.Data, nil
			}
		}
		for _, p := range removed {
			if filepath.Clean(p) == filepath.Clean(path) {
				return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
			}
		}
		return ReadFileNoFollow(path, MaxPEMSize)
	}
}
