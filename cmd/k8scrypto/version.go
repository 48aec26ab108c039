package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type versionInfo struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Version    string `json:"version"`
	Kubeadm    string `json:"kubeadm"`
	GoVersion  string `json:"goVersion"`
	Platform   string `json:"platform"`
}

// Text is the one line of the version.
func (v versionInfo) Text(bool) phases.Text {
	return phases.Text{{Line: fmt.Sprintf("k8scrypto %s (kubeadm %s, %s, %s)", v.Version, v.Kubeadm, v.GoVersion, v.Platform)}}
}

func newVersionCommand(e *env, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the k8scrypto version and the kubeadm version it matches",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			info := versionInfo{
				APIVersion: "k8scrypto.dev/v1alpha1", Kind: "Version",
				Version: version, Kubeadm: config.KubernetesVersion,
				GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
			}
			return g.print(e.stdout, info)
		},
	}
}
