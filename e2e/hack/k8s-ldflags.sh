# Sourced by build-binaries.sh and build-node-image.sh, which build the Kubernetes binaries with the same
# flags (static, -trimpath, these ldflags) so that the second build reuses the first's package compiles
# from the Go build cache and only links: a cold machine compiles Kubernetes once, not twice.
#
# k8s_ldflags VERSION: Kubernetes' own builds stamp the version (hack/lib/version.sh); a plain go build
# says v0.0.0-master, and kubeadm then refuses its own kubernetesVersion. Fixed values, so the binaries
# are reproducible.
k8s_ldflags() {
	local version=$1 major minor flags="" pkg
	major="${version#v}"; major="${major%%.*}"
	minor="${version#v*.}"; minor="${minor%%.*}"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "-s -w${flags}"
}
