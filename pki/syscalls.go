package pki

import "os"

// syscalls are the file layer's system calls whose order makes a write durable: the fsync of a file or a
// directory, and the mkdir, link, rename and remove that change a directory, and the write of a file's
// data. Every such call of the file layer goes through sys, so that a test can swap in a recording
// implementation and check the order (a file fsynced before the rename that publishes it, its directory
// fsynced after), which no test of the files' contents can see, or a failing one (a full or read-only
// file system at the write or the rename).
type syscalls interface {
	// Write writes a temp file's data.
	Write(f *os.File, b []byte) (int, error)
	// Fsync flushes an open file, or an open directory's entries, to stable storage.
	Fsync(f *os.File) error
	Mkdir(path string, mode os.FileMode) error
	Link(oldPath, newPath string) error
	Rename(from, to string) error
	Remove(path string) error
}

// osCalls is the real implementation.
type osCalls struct{}

func (osCalls) Write(f *os.File, b []byte) (int, error)   { return f.Write(b) }
func (osCalls) Fsync(f *os.File) error                    { return f.Sync() }
func (osCalls) Mkdir(path string, mode os.FileMode) error { return os.Mkdir(path, mode) }
func (osCalls) Link(oldPath, newPath string) error        { return os.Link(oldPath, newPath) }
func (osCalls) Rename(from, to string) error              { return os.Rename(from, to) }
func (osCalls) Remove(path string) error                  { return os.Remove(path) }

var sys syscalls = osCalls{}
