// Package kind generates a kind (kubernetes-in-docker) cluster configuration that runs kubeadm on the PKI
// k8scrypto wrote: the certificate directory is bind-mounted at /etc/kubernetes/pki, and k8scrypto's rendered
// kubeadm config is applied to kind's own kubeadm config as two patches: its InitConfiguration (the node's
// name and address the certificates were made for) and its ClusterConfiguration (encryption at rest,
// validity periods, key algorithm), less the fields kind derives from the node.
package kind

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// NodeCertDir is where kubeadm, in the node, looks for the PKI.
const NodeCertDir = "/etc/kubernetes/pki"

// Options are the inputs of a cluster configuration.
type Options struct {
	// Name is the kind cluster's name; the control-plane node is Name+"-control-plane".
	Name string
	// CertDir is the host directory k8scrypto writes the PKI into (absolute).
	CertDir string
	// RenderedKubeadmConfig is k8scrypto's kubeadm-config.yaml; its ClusterConfiguration is what the
	// node's kubeadm config is patched with. Empty means no patch.
	RenderedKubeadmConfig []byte
	// NodeImage overrides kind's default node image when set.
	NodeImage string
}

// ControlPlaneNode is the name (and host name) kind gives the single control-plane node.
func ControlPlaneNode(cluster string) string { return cluster + "-control-plane" }

// ControlPlaneEndpoint is what kind sets as controlPlaneEndpoint for a single control-plane node; the
// apiserver certificate must carry it.
func ControlPlaneEndpoint(cluster string) string { return ControlPlaneNode(cluster) + ":6443" }

// clusterConfigOwnedByKind are ClusterConfiguration fields kind sets from the node and its networking;
// the patch leaves them to kind.
var clusterConfigOwnedByKind = []string{"apiVersion", "kind", "kubernetesVersion", "certificatesDir", "controlPlaneEndpoint", "networking", "clusterName", "etcd"}

// Cluster builds the kind v1alpha4 Cluster.
func Cluster(o Options) (*v1alpha4.Cluster, error) {
	if o.Name == "" {
		return nil, errors.New("kind cluster: a name is required")
	}
	if !filepath.IsAbs(o.CertDir) {
		return nil, fmt.Errorf("kind cluster: cert dir %q must be an absolute path (kind bind-mounts it)", o.CertDir)
	}
	node := v1alpha4.Node{
		Role:  v1alpha4.ControlPlaneRole,
		Image: o.NodeImage,
		ExtraMounts: []v1alpha4.Mount{{
			HostPath:      o.CertDir,
			ContainerPath: NodeCertDir,
		}},
	}
	c := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     o.Name,
		Nodes:    []v1alpha4.Node{node},
	}
	if len(o.RenderedKubeadmConfig) > 0 {
		cc, err := ClusterConfigurationPatch(o.RenderedKubeadmConfig)
		if err != nil {
			return nil, err
		}
		ic, err := InitConfigurationPatch(o.RenderedKubeadmConfig)
		if err != nil {
			return nil, err
		}
		// kind applies each patch to the documents of its apiVersion and kind in the kubeadm config it
		// generates for the node.
		c.KubeadmConfigPatches = []string{ic, cc}
	}
	return c, nil
}

// InitConfigurationPatch turns the InitConfiguration of a rendered kubeadm config into a kind
// kubeadmConfigPatches entry: the node's identity and API endpoint exactly as k8scrypto wrote them into
// the certificates (node name, advertise address), so kubeadm in the node looks for the same names. Paths
// under the rendered certificatesDir are moved to NodeCertDir.
func InitConfigurationPatch(rendered []byte) (string, error) {
	doc, err := document(rendered, "InitConfiguration")
	if err != nil {
		return "", err
	}
	cc, err := document(rendered, "ClusterConfiguration")
	if err != nil {
		return "", err
	}
	certDir, _ := cc["certificatesDir"].(string)
	return patch(doc, "InitConfiguration", certDir)
}

// Marshal writes the cluster configuration as kind reads it.
func Marshal(c *v1alpha4.Cluster) ([]byte, error) {
	return yaml.Marshal(c)
}

// ClusterConfigurationPatch turns the ClusterConfiguration of a rendered kubeadm config into a kind
// kubeadmConfigPatches entry: the fields kind owns are dropped, and paths under the rendered
// certificatesDir are moved to NodeCertDir, where the same files appear in the node.
func ClusterConfigurationPatch(rendered []byte) (string, error) {
	doc, err := document(rendered, "ClusterConfiguration")
	if err != nil {
		return "", err
	}
	certDir, _ := doc["certificatesDir"].(string)
	for _, k := range clusterConfigOwnedByKind {
		delete(doc, k)
	}
	return patch(doc, "ClusterConfiguration", certDir)
}

// patch finishes a kubeadmConfigPatches entry: paths under certDir (when set) are moved to NodeCertDir,
// and the document is marked as the kubeadm v1beta4 kind it patches.
func patch(doc map[string]any, kind, certDir string) (string, error) {
	if certDir != "" {
		doc = remapPaths(doc, filepath.Clean(certDir), NodeCertDir).(map[string]any)
	}
	doc["apiVersion"] = "kubeadm.k8s.io/v1beta4"
	doc["kind"] = kind
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// document returns the document of the given kind (kubeadm.k8s.io/v1beta4) of a kubeadm config stream.
func document(rendered []byte, kind string) (map[string]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendered)))
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("rendered kubeadm config: no %s document", kind)
		}
		if err != nil {
			return nil, fmt.Errorf("rendered kubeadm config: %w", err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("rendered kubeadm config: %w", err)
		}
		if doc["kind"] != kind {
			continue
		}
		if doc["apiVersion"] != "kubeadm.k8s.io/v1beta4" {
			return nil, fmt.Errorf("rendered kubeadm config: %s is %v, want kubeadm.k8s.io/v1beta4", kind, doc["apiVersion"])
		}
		return doc, nil
	}
}

// remapPaths replaces the prefix from with to in every string that is from or a path below it.
func remapPaths(v any, from, to string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			v[k] = remapPaths(c, from, to)
		}
		return v
	case []any:
		for i, c := range v {
			v[i] = remapPaths(c, from, to)
		}
		return v
	case string:
		if v == from {
			return to
		}
		if rest, ok := strings.CutPrefix(v, from+"/"); ok {
			return to + "/" + rest
		}
		return v
	}
	return v
}

// K8scryptoConfig is the kubeadm v1beta4 input for `k8scrypto init` that matches the kubeadm config kind
// generates for its control-plane node at nodeIP (kind's defaults: service subnet 10.96.0.0/16, pod
// subnet 10.244.0.0/16, API server reachable from the host on 127.0.0.1 and localhost).
func K8scryptoConfig(cluster, nodeIP string) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %[2]s
  bindPort: 6443
nodeRegistration:
  name: %[3]s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: %[1]s
controlPlaneEndpoint: %[4]s
networking:
  serviceSubnet: 10.96.0.0/16
  podSubnet: 10.244.0.0/16
apiServer:
  certSANs: ["localhost", "127.0.0.1"]
`, cluster, nodeIP, ControlPlaneNode(cluster), ControlPlaneEndpoint(cluster))
}

// NodeNetwork is a docker network for one cluster whose single node's address is known before the node
// exists: docker gives the first container on a fresh network the first address after the gateway. With
// it, k8scrypto writes the node's PKI, and the kubeadm config patches, from one render before kind runs;
// kind is pointed at the network with KIND_EXPERIMENTAL_DOCKER_NETWORK.
type NodeNetwork struct {
	Name    string
	Subnet  string // a /29: the gateway and a handful of addresses
	Gateway string
	NodeIP  string
}

// NewNodeNetwork plans the network for index (0-8191), one of the /29s of 172.31.0.0/16.
func NewNodeNetwork(name string, index int) (NodeNetwork, error) {
	if index < 0 || index >= 1<<13 {
		return NodeNetwork{}, fmt.Errorf("node network index %d: want 0-8191", index)
	}
	base := index * 8
	ip := func(off int) string { return fmt.Sprintf("172.31.%d.%d", (base+off)>>8, (base+off)&0xff) }
	return NodeNetwork{Name: name, Subnet: ip(0) + "/29", Gateway: ip(1), NodeIP: ip(2)}, nil
}
