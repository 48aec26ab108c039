// Package pki is k8scrypto's library of key material and of the files that hold it.
//
// It holds: keys (generation, the concurrent KeyPool, PEM encoding and parsing, fingerprints), certificates
// issued exactly as kubeadm issues them, the ordered catalogues of kubeadm's certificates and kubeconfigs
// (Catalog, Kubeconfigs) and the Config they are resolved from, and the file layer: bounded reads that
// refuse links, FIFOs and devices (ReadFile, ReadFileNoFollow), atomic journalled transactions (Commit,
// CheckCommit, WriteFileAtomic) and their crash recovery (Recover, Interrupted), the directory lock, backups
// and the audit log. Its subpackages hold the service-account key pair and its rotation stages (sakeys), the
// encryption-at-rest configuration (encryption), the files control planes share (certshare) and
// deterministic test inputs and the node harness (pkitest).
//
// It never prints or logs, never reads the clock for what it writes (the time is a parameter), never
// decides what a run does (which files, which stage, whether something is due: that is package phases), and
// never writes a file but through its own file layer: temp file, fsync, rename, fsync of the directory. It
// knows no command, flag or exit status: an error that needs one carries data instead (BackupRootError,
// sakeys.FileError, encryption.StageError, encryption.WriteKeyError, certshare.BundleError, ...), and
// package phases words it. (It does name kube-apiserver's own flags, which describe kube-apiserver.)
package pki
