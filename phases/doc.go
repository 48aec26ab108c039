// Package phases holds k8scrypto's workflows: what each command decides and in which order.
//
// It holds the phase runner and the phases of "k8scrypto init" (each phase stages the files it would write,
// and the runner commits every staged file in one crash-safe transaction at the end, so a run that fails
// anywhere writes nothing), certificate renewal, the expiry report, and the loading and verifying of the
// files an earlier run wrote (LoadCert, LoadKey, LoadKubeconfig). Its subpackages load kubeadm's
// configuration (config) and rewrite stored objects under the current encryption key (reencrypt).
//
// It never parses flags or prints: inputs come as option structs, results go back as versioned values that
// the command layer prints, and progress goes to the slog.Logger it is given. It never reads the clock (the
// caller reads it once per run) and never writes a file itself: every write goes through package pki's
// transactions.
package phases
