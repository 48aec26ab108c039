package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/phases"
)

// apiserverFlags name a running kube-apiserver to ask which encryption config it has loaded.
type apiserverFlags struct {
	kubeconfig string
	timeout    time.Duration
	wait       bool
	waitFor    time.Duration
	endpoints  []string
}

func (f *apiserverFlags) add(fs *pflag.FlagSet, purpose string) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (admin.conf): "+purpose)
	fs.DurationVar(&f.timeout, "apiserver-timeout", 10*time.Second, "timeout for each request to kube-apiserver")
}

// addWait adds --wait for a step that needs the apiserver to have loaded the file first.
func (f *apiserverFlags) addWait(fs *pflag.FlagSet) {
	fs.BoolVar(&f.wait, "wait", false, "wait until the apiserver runs the file on disk (it reloads a changed file about once a minute), up to --wait-timeout")
	fs.DurationVar(&f.waitFor, "wait-timeout", 5*time.Minute, "how long --wait waits")
}

// addEndpoints adds --apiserver-endpoint for a command that asks every apiserver of the kubernetes
// Service which encryption config it runs.
func (f *apiserverFlags) addEndpoints(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.endpoints, "apiserver-endpoint", nil, `ENDPOINT=HOST:PORT (repeatable): reach the apiserver that the kubernetes Service lists as ENDPOINT (ADDRESS:PORT, as in "kubectl get endpointslices -l kubernetes.io/service-name=kubernetes") at HOST:PORT instead, still verifying its certificate for ADDRESS; for endpoints this machine cannot dial directly`)
}

func (f *apiserverFlags) apiServer() (phases.APIServer, error) {
	a := phases.APIServer{Kubeconfig: f.kubeconfig, Timeout: f.timeout}
	if f.wait {
		a.Wait = f.waitFor
	}
	for _, m := range f.endpoints {
		from, to, ok := strings.Cut(m, "=")
		if !ok || !isHostPort(from) || !isHostPort(to) {
			return a, usageError{fmt.Errorf("--apiserver-endpoint %q: want ENDPOINT=HOST:PORT, both host:port, e.g. 10.0.0.5:6443=127.0.0.1:6443", m)}
		}
		if a.Kubeconfig == "" {
			return a, usageError{fmt.Errorf("--apiserver-endpoint needs --kubeconfig: the endpoints are those of the cluster it names")}
		}
		if a.Connect == nil {
			a.Connect = map[string]string{}
		}
		if _, dup := a.Connect[from]; dup {
			return a, usageError{fmt.Errorf("--apiserver-endpoint %s is given twice", from)}
		}
		a.Connect[from] = to
	}
	return a, nil
}

// isHostPort: a host (an IP address is what an EndpointSlice lists) and a numeric port 1-65535.
func isHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != p {
		return false
	}
	return true
}
