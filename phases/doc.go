// Package phases holds k8scrypto's workflows: what each command decides and in which order.
//
// Every command that writes runs in a Session, the one envelope: it takes the certificate directory's lock,
// recovers what an interrupted run left, opens the audit log and the backup root, takes backups, and
// commits a set of staged files with their audit lines (Session.Commit; nothing else calls pki.Commit).
// Read-only commands recover first through RecoverBeforeReading. The staged rotations (service-account
// keys, the encryption config, the CAs) implement Rotation and run through RotateStep. ConfigSource is the
// one resolver of the kubeadm configuration, flags and defaults.
//
// It also holds the phase runner and the phases of "k8scrypto init" (each phase stages the files it would
// write, and the runner commits every staged file in one transaction at the end, so a run that fails
// anywhere writes nothing), certificate renewal, the expiry and status reports, the shared-key workflows
// of joining control planes, and the loading and verifying of files an earlier run wrote (LoadCert,
// LoadKey, LoadKubeconfig). It holds the words the command layer prints: command names, next steps and
// fixes for what package pki reports as data (typed errors, stages), and each result's text form (Text).
// Its subpackages load kubeadm's configuration (config), rewrite stored objects under the current
// encryption key (reencrypt), and hold the consistency checks the crash tests share (phasestest).
//
// It never parses flags or writes to stdout: inputs come as option structs, results go back as versioned
// values (and their Text) that the command layer prints, and progress goes to the slog.Logger it is given.
// It never reads the clock (the caller reads it once per run) and never writes a file itself: every write
// goes through package pki's file layer, in a Session.
package phases
