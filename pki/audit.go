package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// DefaultAuditLog is where the audit trail goes when the operator names no file (root only; see StateDir).
const DefaultAuditLog = "/var/log/k8scrypto/audit.log"

// Audit operations.
const (
	AuditCreate = "create"
	AuditReuse  = "reuse"
	AuditRenew  = "renew"
	AuditRotate = "rotate"
	AuditRemove = "remove"
	AuditBackup = "backup"
	// AuditRecover is a file that recovery completed or put back after an interrupted run.
	AuditRecover = "recover"
)

// AuditEvent is one line of the audit log. It identifies key material only by fingerprint, never by value.
type AuditEvent struct {
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
	File      string    `json:"file"`
	Serial    string    `json:"serial,omitempty"`
	SHA256    string    `json:"sha256,omitempty"` // of the certificate DER, or of a key's public half (PKIX DER)
	Outcome   string    `json:"outcome"`          // "ok" or the error
	Detail    string    `json:"detail,omitempty"`
	User      string    `json:"user"`
	Host      string    `json:"host"`
}

// AuditLog appends JSON lines to a file (0600). A nil *AuditLog records nothing.
type AuditLog struct {
	Path string
	user string
	host string
}

// OpenAuditLog prepares the log at path, creating its directory (0700) if needed.
func OpenAuditLog(path string) (*AuditLog, error) {
	if err := EnsureDir(filepath.Dir(path), ModeStrictDir, false); err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	l := &AuditLog{Path: path, host: "unknown", user: fmt.Sprint(os.Getuid())}
	if h, err := os.Hostname(); err == nil {
		l.host = h
	}
	if u, err := user.Current(); err == nil {
		l.user = u.Username
	}
	// Fail now, not after the work, if the log cannot be written.
	f, err := openPrivate(path, os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return l, f.Close()
}

// CheckAuditLog reports whether OpenAuditLog(path) could open the log, creating and changing nothing: its
// directory can be created or written, and a file already there is a regular file (not a link) that opens
// for appending. A dry run checks with it what the real run would find at once.
func CheckAuditLog(path string) error {
	if err := CheckWritableDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("audit log %s: %w", path, err)
	}
	info, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("audit log: %w", err)
	case info.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("audit log: %s is a symbolic link, which k8scrypto does not follow: replace it with a regular file or remove it", path)
	case !info.Mode().IsRegular():
		return fmt.Errorf("audit log: %s: %w: remove it", path, ErrNotRegular)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|noFollow, 0) // #nosec G304 -- the operator's audit log, checked above; nothing is written
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return f.Close()
}

// Record appends events, one line each, and syncs the file.
func (l *AuditLog) Record(events ...AuditEvent) error {
	if l == nil || len(events) == 0 {
		return nil
	}
	f, err := openPrivate(l.Path, os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close() // the fsync below reports whether the lines are stored
	var buf []byte
	for _, e := range events {
		if e.User == "" {
			e.User = l.user
		}
		if e.Host == "" {
			e.Host = l.host
		}
		if e.Outcome == "" {
			e.Outcome = "ok"
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
	}
	if err := fault(OpWrite, l.Path); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := fault(OpSync, l.Path); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := sys.Fsync(f); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}
