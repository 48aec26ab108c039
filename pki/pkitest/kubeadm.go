package pkitest

// KubeadmInit is the kubeadm v1beta4 InitConfiguration of the tests' node, testdata/kubeadm-init.yaml: node
// cp-1, advertising 10.0.0.5.
var KubeadmInit = mustFixture("testdata/kubeadm-init.yaml")

// KubeadmConfig is KubeadmInit followed by a ClusterConfiguration document whose fields are cluster (YAML,
// one field a line, possibly empty).
func KubeadmConfig(cluster string) string {
	return KubeadmInit + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n" + cluster
}

func mustFixture(file string) string {
	data, err := fixtures.ReadFile(file)
	if err != nil {
		panic(err)
	}
	return string(data)
}
