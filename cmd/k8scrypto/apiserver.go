package main

import (
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

func (f *apiserverFlags) apiServer() phases.APIServer {
	a := phases.APIServer{Kubeconfig: f.kubeconfig, Timeout: f.timeout}
	if f.wait {
		a.Wait = f.waitFor
	}
	return a
}
