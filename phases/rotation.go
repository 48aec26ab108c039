package phases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// Rotation is one kind of staged key rotation: the service-account key pair (SAKeys), the encryption
// configuration, and next the CAs. Each step is a command ("prepare", "promote", "prune"); RotateStep runs
// any of them the same way.
type Rotation interface {
	// Read reads the files and the stage they are in.
	Read() error
	// Check refuses a step that the stage does not allow, or that lacks what it needs (a confirmation, an
	// apiserver that runs the file), before any key is made or file touched. A dry run stops after it.
	Check(ctx context.Context, step string) error
	// Plan computes the step: the files it writes, in one transaction, the files it leaves obsolete, and the
	// audit lines of the change.
	Plan(ctx context.Context, step string) (*RotationPlan, error)
	// Files lists the files a step may replace; each is backed up before the step.
	Files() []string
}

// RotationPlan is what one step of a rotation writes.
type RotationPlan struct {
	Files []pki.File
	// Obsolete files are removed after the commit. When the step writes nothing else (it finishes an earlier
	// step), a failed removal is the step's failure; after a commit it is not: the step's change is in place,
	// and the rotation's Read reports the leftover.
	Obsolete []string
	Events   []pki.AuditEvent
}

// RotateOptions are where a rotation step runs: its session and whether it only checks.
type RotateOptions struct {
	CertDir       string
	KubeconfigDir string
	AuditLog      string
	BackupDir     string
	LockTimeout   time.Duration
	DryRun        bool
	Now           time.Time
	Log           *slog.Logger
}

// StepReport is what a rotation step wrote, copied and removed, or in a dry run would: the same fields
// every writing command reports (files, backups, backupDir, auditLog).
type StepReport struct {
	// Files are the files the step writes, in one transaction; Removes those it removes after it.
	Files   []string `json:"files"`
	Removes []string `json:"removes,omitempty"`
	// Backups are the copies of the files the step may replace, in BackupDir (empty when none exists).
	Backups   []string `json:"backups,omitempty"`
	BackupDir string   `json:"backupDir,omitempty"`
	// AuditLog is the file the step's audit lines are appended to.
	AuditLog string `json:"auditLog,omitempty"`
}

// RotateStep runs step of r: in a session (lock, recovery, the key-rotations backup root), it reads the
// stage, refuses a step the stage does not allow, plans the step, copies every file the step may replace to
// a new backup directory, commits the step's files with their audit lines and the backups', and removes
// what the step made obsolete. A step whose plan has nothing to write or remove (the node is at the step's
// stage already) takes no backup and writes nothing, not even an audit line. A dry run takes the same path
// in a DrySession: it reads, checks and plans the same way and reports the same files, backups and audit
// log, but copies, writes and removes nothing.
func RotateStep(ctx context.Context, r Rotation, step string, o RotateOptions) (*StepReport, error) {
	s, err := BeginSession(ctx, SessionOptions{
		CertDir: o.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout, AuditLog: o.AuditLog,
		BackupDir: o.BackupDir, Backups: true, KeyRotations: true, RequireCertDir: true, DryRun: o.DryRun, Now: o.Now, Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	defer s.Release()
	if err := r.Read(); err != nil {
		return nil, err
	}
	if err := r.Check(ctx, step); err != nil {
		return nil, err
	}
	plan, err := r.Plan(ctx, step)
	if err != nil {
		return nil, err
	}
	rep := &StepReport{AuditLog: s.AuditLog, Removes: plan.Obsolete}
	if len(plan.Files) == 0 && len(plan.Obsolete) == 0 {
		return rep, nil
	}
	for _, f := range plan.Files {
		rep.Files = append(rep.Files, f.Path)
	}
	var events []pki.AuditEvent
	if rep.Backups, rep.BackupDir, events, err = backUp(s, r.Files()); err != nil {
		return nil, err
	}
	if s.DryRun() {
		return rep, nil
	}
	err = s.Commit(plan.Files, append(events, plan.Events...))
	if !Committed(err) {
		return rep, s.Fail(err)
	}
	for _, p := range plan.Obsolete {
		// Through pki's fault hook, so the crash walks fail and interrupt the removal and its directory fsync.
		if rerr := pki.RemoveFile(p); rerr != nil && len(plan.Files) == 0 {
			err = errors.Join(err, fmt.Errorf("removing %s: %w", p, rerr))
		}
	}
	return rep, err
}

// backUp copies the files that exist into a new backup directory of the session, and returns the copies,
// their directory ("" when none was taken) and their audit lines. On error the copies taken are removed
// again. In a dry session it copies nothing and returns the copies it would take.
func backUp(s *Session, files []string) (copies []string, dir string, events []pki.AuditEvent, err error) {
	bs, err := s.Backups()
	if err != nil {
		return nil, "", nil, err
	}
	for _, p := range files {
		var dst string
		if s.DryRun() {
			dst, err = bs.Target(p)
		} else {
			dst, err = bs.Save(p)
		}
		if err != nil {
			if !s.DryRun() {
				bs.Discard()
			}
			return nil, "", nil, backupError(err)
		}
		if dst != "" {
			copies = append(copies, dst)
			events = append(events, pki.AuditEvent{Time: s.o.Now, Operation: pki.AuditBackup, File: p, Detail: "copied to " + dst})
		}
	}
	if len(copies) > 0 {
		dir = bs.Dir
	}
	return copies, dir, events, nil
}

// RefusedError is a step that the current state refuses: a stage out of order. The command exits 3, so that
// scripts can tell it apart.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// ExitCode is the process exit status for a refused step.
func (e *RefusedError) ExitCode() int { return 3 }

// UsageError is an error in how the command was called (a missing confirmation, an invalid selection):
// the command layer reports it with its usage exit status.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func (o RotateOptions) logger() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}
