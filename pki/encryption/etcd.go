package encryption

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdOptions locate etcd and the client certificate to read it with (kubeadm's apiserver-etcd-client or
// etcd/healthcheck-client pair).
type EtcdOptions struct {
	Endpoints []string
	CACert    string
	Cert      string
	Key       string
	Timeout   time.Duration // per request; 0 means 10s
}

// DialEtcd connects to etcd and returns a RangeFunc over it and a function closing the connection.
func DialEtcd(o EtcdOptions) (RangeFunc, func() error, error) {
	if len(o.Endpoints) == 0 {
		return nil, nil, errors.New("no etcd endpoints (--etcd-endpoints https://127.0.0.1:2379)")
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	var tlsCfg *tls.Config
	if o.CACert != "" || o.Cert != "" || o.Key != "" {
		if o.CACert == "" || o.Cert == "" || o.Key == "" {
			return nil, nil, errors.New("--etcd-cacert, --etcd-cert and --etcd-key go together")
		}
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("etcd CA %s holds no PEM certificate", o.CACert)
		}
		pair, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client certificate %s / %s: %w", o.Cert, o.Key, err)
		}
		tlsCfg = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.Timeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(), // errors are returned, not logged
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to etcd %v: %w", o.Endpoints, err)
	}
	rng := func(ctx context.Context, start, end string, rev, limit int64) ([]KV, int64, bool, error) {
		ctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, 0, false, err
		}
		kvs := make([]KV, len(resp.Kvs))
		for i, kv := range resp.Kvs {
			kvs[i] = KV{Key: kv.Key, Value: kv.Value}
		}
		return kvs, resp.Header.Revision, resp.More, nil
	}
	return rng, cli.Close, nil
}
