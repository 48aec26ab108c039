package phases

import "k8scrypto.dev/k8scrypto/pki"

// TEMPORARY (not committed): the refactor branch defines these.
type RotationPlan struct {
	Files    []pki.File
	Obsolete []string
	Events   []pki.AuditEvent
}

type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }
