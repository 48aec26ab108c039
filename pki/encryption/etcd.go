package encryption

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
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

// DialEtcd returns a RangeFunc over etcd's JSON gateway (POST /v3/kv/range on the client URL, served by
// every etcd v3 server) and a function releasing its connections. The gateway, not the gRPC client,
// because go.etcd.io/etcd/client/v3 links gRPC into every k8scrypto command and its start-up cost with
// it, for the one command that counts keys.
func DialEtcd(o EtcdOptions) (RangeFunc, func() error, error) {
	if len(o.Endpoints) == 0 {
		return nil, nil, errors.New("no etcd endpoints (such as https://127.0.0.1:2379)")
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	var endpoints []string
	for _, e := range o.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, nil, fmt.Errorf("etcd endpoint %q: want https://HOST:PORT", e)
		}
		endpoints = append(endpoints, u.Scheme+"://"+u.Host)
	}
	tr := &http.Transport{TLSHandshakeTimeout: o.Timeout, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2}
	if o.CACert != "" || o.Cert != "" || o.Key != "" {
		if o.CACert == "" || o.Cert == "" || o.Key == "" {
			return nil, nil, errors.New("the etcd CA certificate, client certificate and client key go together")
		}
		// Bounded reads of regular files only: a FIFO named by mistake would hang the command.
		pem, err := pki.ReadFile(o.CACert, pki.MaxPEMSize)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("etcd CA %s holds no PEM certificate", o.CACert)
		}
		certPEM, err := pki.ReadFile(o.Cert, pki.MaxPEMSize)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		keyPEM, err := pki.ReadFile(o.Key, pki.MaxPEMSize)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client certificate %s / %s: %w", o.Cert, o.Key, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	g := &etcdGateway{endpoints: endpoints, client: &http.Client{Transport: tr, Timeout: o.Timeout}}
	return g.rangeKeys, func() error { tr.CloseIdleConnections(); return nil }, nil
}

// etcdGateway sends each request to the endpoint that last answered, moving on to the next one when an
// endpoint cannot be reached (as the gRPC client balances across members).
type etcdGateway struct {
	endpoints []string
	current   int
	client    *http.Client
}

// rangeRequest is etcdserverpb.RangeRequest as the gateway reads it (protobuf JSON: bytes in base64,
// int64 as strings or numbers).
type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	Limit    int64  `json:"limit,omitempty,string"`
	Revision int64  `json:"revision,omitempty,string"`
}

// rangeResponse is the part of etcdserverpb.RangeResponse counting needs.
type rangeResponse struct {
	Header struct {
		Revision jsonInt64 `json:"revision"`
	} `json:"header"`
	Kvs []struct {
		Key   []byte `json:"key"`
		Value []byte `json:"value"`
	} `json:"kvs"`
	More bool `json:"more"`
}

// jsonInt64 accepts an int64 written as protobuf JSON does (a string) or as a number.
type jsonInt64 int64

func (n *jsonInt64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	*n = jsonInt64(v)
	return err
}

func (g *etcdGateway) rangeKeys(ctx context.Context, start, end string, rev, limit int64) ([]KV, int64, bool, error) {
	body, err := json.Marshal(rangeRequest{Key: []byte(start), RangeEnd: []byte(end), Limit: limit, Revision: rev})
	if err != nil {
		return nil, 0, false, err
	}
	var errs []error
	for range g.endpoints {
		ep := g.endpoints[g.current]
		resp, err := g.post(ctx, ep+"/v3/kv/range", body)
		if err == nil {
			kvs := make([]KV, len(resp.Kvs))
			for i, kv := range resp.Kvs {
				kvs[i] = KV{Key: kv.Key, Value: kv.Value}
			}
			return kvs, int64(resp.Header.Revision), resp.More, nil
		}
		var refused *etcdError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return nil, 0, false, err // etcd answered: another member would answer the same
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		g.current = (g.current + 1) % len(g.endpoints)
	}
	return nil, 0, false, fmt.Errorf("no etcd endpoint answered: %w", errors.Join(errs...))
}

// etcdError is an error etcd itself returned.
type etcdError struct {
	Status  int
	Message string
}

func (e *etcdError) Error() string { return fmt.Sprintf("etcd: %s (HTTP %d)", e.Message, e.Status) }

func (g *etcdGateway) post(ctx context.Context, u string, body []byte) (*rangeResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && (e.Message != "" || e.Error != "") {
			msg = e.Message
			if msg == "" {
				msg = e.Error
			}
		}
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return nil, &etcdError{Status: resp.StatusCode, Message: msg}
	}
	var out rangeResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decoding etcd's range response: %w", err)
	}
	return &out, nil
}
