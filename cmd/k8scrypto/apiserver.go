package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// apiserverFlags name a running kube-apiserver to ask which encryption config it has loaded.
type apiserverFlags struct {
	kubeconfig string
	timeout    time.Duration
}

func (f *apiserverFlags) add(fs *pflag.FlagSet, purpose string) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (admin.conf): "+purpose)
	fs.DurationVar(&f.timeout, "apiserver-timeout", 10*time.Second, "timeout for the request to kube-apiserver")
}

// apiserverEncryption is whether the apiserver runs the encryption config file on disk.
type apiserverEncryption struct {
	Server string `json:"server"`
	encryption.APIServerView
	FileHash string `json:"fileHash"`
	// RunsThisFile: the apiserver's last loaded configuration is byte for byte the file on disk.
	RunsThisFile bool `json:"runsThisFile"`
}

// view reads kube-apiserver's /metrics and compares the configuration it last loaded with fileHash, the
// file on disk (encryption.FileHash); nil when no --kubeconfig is given.
func (f *apiserverFlags) view(ctx context.Context, fileHash string) (*apiserverEncryption, error) {
	if f.kubeconfig == "" {
		return nil, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", f.kubeconfig, err)
	}
	rc.Timeout = f.timeout
	rc.UserAgent = "k8scrypto"
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", f.kubeconfig, err)
	}
	server := strings.TrimRight(rc.Host, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking kube-apiserver which encryption config it runs: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s/metrics: %w", server, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s (the --kubeconfig user needs get on the non-resource URL /metrics, as admin.conf has)", server, resp.Status)
	}
	v, err := encryption.ParseAPIServerMetrics(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	return &apiserverEncryption{Server: server, APIServerView: v, FileHash: fileHash, RunsThisFile: v.ConfigHash == fileHash}, nil
}

// describe says in one line what the apiserver runs, for the status text.
func (a *apiserverEncryption) describe() string {
	var b strings.Builder
	if a.RunsThisFile {
		fmt.Fprintf(&b, "%s runs this file", a.Server)
	} else {
		fmt.Fprintf(&b, "%s runs another version of the file (%s, not %s): it reloads a changed file within about a minute with --encryption-provider-config-automatic-reload, otherwise on restart", a.Server, short(a.ConfigHash), short(a.FileHash))
	}
	if a.LastReload != nil {
		fmt.Fprintf(&b, "; last automatic reload %s", a.LastReload.Format(time.RFC3339))
	}
	if a.ReloadFailing() {
		fmt.Fprintf(&b, "; its latest reload FAILED at %s, so it keeps the previous config (see its log)", a.LastFailedReload.Format(time.RFC3339))
	}
	return b.String()
}

// short abbreviates a "sha256:<hex>" hash for humans; -o json prints it whole.
func short(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}
