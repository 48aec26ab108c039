package phases

import (
	"context"
	"errors"
	"fmt"

	"k8scrypto.dev/k8scrypto/phases/reencrypt"
)

// ReencryptOptions are the inputs of "encryption reencrypt": the run (without CertDir and Args, which
// come from the configuration) and what recovery needs.
type ReencryptOptions struct {
	ReadOptions
	ReencryptRequest
}

// RunReencrypt is "k8scrypto encryption reencrypt": like every command it first completes an interrupted
// run (or refuses while one is pending), then Reencrypt. The result is nil when nothing was sent to the
// apiserver (refused before, or interrupted: the error says it all).
func RunReencrypt(ctx context.Context, o ReencryptOptions) (*ReencryptResult, error) {
	if o.API.Kubeconfig == "" {
		return nil, &UsageError{errors.New("--kubeconfig is required (for example /etc/kubernetes/admin.conf)")}
	}
	if o.Workers < 1 || o.PageSize < 1 {
		return nil, &UsageError{errors.New("--workers and --page-size must be at least 1")}
	}
	if err := checkList("--resources", o.Resources); err != nil {
		return nil, err
	}
	if err := o.Etcd.Check(); err != nil {
		return nil, err
	}
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	if err := RecoverBeforeReading(o.session(cfg.PKI.CertDir)); err != nil {
		return nil, err
	}
	req := o.ReencryptRequest
	req.CertDir, req.Args = cfg.PKI.CertDir, NewStepArgs(o.Config, req.API, req.Etcd)
	res, runErr := Reencrypt(ctx, req)
	var interrupted *InterruptedError
	if errors.As(runErr, &interrupted) {
		return nil, runErr // one line, no partial report
	}
	var notServed *reencrypt.NotServedError
	if errors.As(runErr, &notServed) {
		return nil, &UsageError{fmt.Errorf("--resources: %w", runErr)}
	}
	if res.Server == "" { // refused before anything was sent
		return nil, runErr
	}
	return &res, runErr
}
