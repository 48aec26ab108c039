package phases

import (
	"errors"

	"k8scrypto.dev/k8scrypto/pki"
)

// CommitStep names the step of Session.Commit that failed.
type CommitStep int

const (
	// CommitRefused: pki.CheckCommit refused the files (a link or a directory in a target's place, a
	// private file in a directory others can write); nothing was written.
	CommitRefused CommitStep = iota
	// CommitIntent: the audit intent could not be written; nothing was replaced.
	CommitIntent
	// CommitWrite: the transaction failed and was undone (or is left for the next run's recovery).
	CommitWrite
	// CommitRecord: the files are replaced, but the audit lines could not be appended; they stay in the
	// intent, which the next run records.
	CommitRecord
	// CommitClear: the files are replaced and the lines recorded, but the intent could not be removed.
	CommitClear
)

// CommitError is a failed Session.Commit: the step, and the cause, which Error returns as it is.
type CommitError struct {
	Step CommitStep
	Err  error
}

func (e *CommitError) Error() string { return e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

// Committed reports whether err, from Session.Commit, leaves the files replaced.
func Committed(err error) bool {
	var ce *CommitError
	return err == nil || (errors.As(err, &ce) && ce.Step >= CommitRecord)
}

// Commit replaces files in one crash-safe transaction and records events, the run's audit lines, so that
// they are never lost: it refuses what the transaction would refuse, writes the lines to the audit intent,
// commits, appends them to the audit log and clears the intent. A run killed after the commit leaves the
// intent, and the next run's recovery records the lines. A session without an audit log (a test's) writes
// no intent and records nothing. It is the one caller of pki.Commit.
//
// With no files it only records events (lines of files reused or refused). A dry session commits nothing.
func (s *Session) Commit(files []pki.File, events []pki.AuditEvent) error {
	if s.o.DryRun {
		return nil
	}
	if len(files) == 0 {
		if err := s.Audit.Record(events...); err != nil {
			return &CommitError{CommitRecord, err}
		}
		return nil
	}
	if err := pki.CheckCommit(s.o.CertDir, files); err != nil {
		return &CommitError{CommitRefused, err}
	}
	if s.Audit != nil {
		if err := writeAuditIntent(s.o.CertDir, events, files); err != nil {
			return &CommitError{CommitIntent, err}
		}
	}
	if err := pki.Commit(s.o.CertDir, files); err != nil {
		return &CommitError{CommitWrite, err}
	}
	if s.Audit == nil {
		return nil
	}
	if err := s.Audit.Record(events...); err != nil {
		return &CommitError{CommitRecord, err}
	}
	if err := clearAuditIntent(s.o.CertDir); err != nil {
		return &CommitError{CommitClear, err}
	}
	return nil
}

// abandon adds to a failed run's error the recording of its audit intent: a failed commit was undone, so
// the intent is recorded as not applied. While a replacement is still pending (the undo failed too), err is
// returned as it is and the next run's recovery decides.
func (s *Session) abandon(err error) error {
	if s.Audit == nil || len(pki.Interrupted(s.o.CertDir, recoverDirs(s.o)...)) > 0 {
		return err
	}
	return errors.Join(err, flushAuditIntent(s.o.CertDir, s.Audit, s.o.Now.UTC(), s.o.Log))
}
