// Package templates holds the text templates k8scrypto renders, embedded in the binary.
package templates

import (
	"embed"
	"sync"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// KubeadmConfig renders kubeadm-config.yaml: kubeadm's InitConfiguration and ClusterConfiguration (bodies
// already marshalled) plus the input's other documents, verbatim. Parsed on first use, not at start-up,
// which every command pays for.
var KubeadmConfig = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("kubeadm-config.yaml.tmpl").ParseFS(files, "kubeadm-config.yaml.tmpl"))
})

// KubeadmConfigData is what the kubeadm-config template needs.
type KubeadmConfigData struct {
	NodeName      string
	NextCommand   string
	CertDir       string
	KubeconfigDir string
	Elsewhere     bool // the kubeconfigs are not in /etc/kubernetes, where "kubeadm init" reads them
	APIVersion    string
	// Join: the node joins an existing control plane; Init is then a JoinConfiguration's body.
	Join    bool
	Init    string // YAML body without apiVersion and kind, ending in a newline
	Cluster string
	Extra   []string // each a YAML document ending in a newline
}
