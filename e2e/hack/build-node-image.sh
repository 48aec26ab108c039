#!/usr/bin/env bash
# Builds, offline, the kind node image the kind tests (e2e/kind) boot, and the stand-in for kind's load
# balancer image. No image registry is reachable here, so `kind build node-image` cannot be used (it
# fetches etcd, pause and the base image from registries); this script does what kind v0.33.0's
# images/base/Dockerfile and pkg/build/nodeimage do, from pinned sources only:
#
#   binaries   containerd v2, ctr, the runc shim, runc (cgo + seccomp), crictl from the Go module proxy
#              (e2e/hack/node-image.pins); kubelet, kubeadm, kubectl, kube-apiserver, kube-controller-manager,
#              kube-scheduler (with Kubernetes' version ldflags) and etcd from e2e/go.mod; pause and the
#              load-balancer stand-in from e2e/kind/images.
#   rootfs     Debian (debootstrap --variant=minbase) with kind's package list.
#   images     one-binary images for the names `kubeadm config images list` gives, saved as archives.
#   node       rootfs + kind's images/base/files (from the pinned kind module) + the binaries + the
#              Dockerfile's systemd steps + the images imported into containerd's k8s.io namespace.
#   lb         docker.io/envoyproxy/envoy:<kind's tag>: the rootfs with e2e/kind/images/lbproxy as `envoy`.
#
# Everything is cached outside the repository, in ${K8SCRYPTO_E2E_KIND_CACHE:-~/.cache/k8scrypto-e2e/kind}:
# each binary is checked against its pins (the module, version, go.sum hash, tags and cgo setting
# the Go toolchain records in it, `go version -m`, and the version it reports, which the version ldflags
# set) and rebuilt on mismatch; the rootfs and the two images
# carry a key made from their inputs (pins, binaries' hashes, this script) and are rebuilt when it changes.
# The node image's name is written to <cache>/node-image, which the tests read.
#
# Needs root and a Docker engine that answers (e2e/hack/docker.sh start). Prints each stage and its time.
set -euo pipefail
cd "$(dirname "$0")/.."
e2e_dir=$PWD
script="$e2e_dir/hack/build-node-image.sh"
# shellcheck source=node-image.pins
source "$e2e_dir/hack/node-image.pins"

cache="${K8SCRYPTO_E2E_KIND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/k8scrypto-e2e/kind}"
bin="$cache/bin"
mkdir -p "$bin"
# One build at a time; what an interrupted one left in the cache goes.
exec 9>"$cache/.lock"
flock -n 9 || { echo "build-node-image: waiting for another build of $cache" >&2; flock 9; }
rm -rf "$cache"/gobin.* "$cache"/rootfs.* "$cache"/image.* "$cache"/node.* "$cache"/lb.* "$cache"/*.tmp

total_start=$SECONDS
stage_start=$SECONDS
stage_name=""
stage() {
	if [ -n "$stage_name" ]; then
		echo "==> $stage_name: done in $((SECONDS - stage_start))s" >&2
	fi
	stage_name="$1"
	stage_start=$SECONDS
	if [ -n "$stage_name" ]; then echo "==> $stage_name" >&2; fi
}
die() { echo "build-node-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, and files owned by the node's users)"

pinned() { (cd "$e2e_dir" && go list -m -f '{{.Path}} {{.Version}} {{.Sum}}' "$1"); }
k8s_version="$(pinned k8s.io/kubernetes | cut -d' ' -f2)"
kind_version="$(pinned sigs.k8s.io/kind | cut -d' ' -f2)"
kind_dir="$(cd "$e2e_dir" && go mod download -json sigs.k8s.io/kind@"$kind_version" | jq -r .Dir)"
[ -d "$kind_dir/images/base/files" ] || die "kind $kind_version has no images/base/files at $kind_dir"
lb_image="$(sed -n 's/^const Image = "\(.*\)"$/\1/p' "$kind_dir/pkg/cluster/internal/loadbalancer/const.go")"
[ -n "$lb_image" ] || die "cannot read the load-balancer image name from kind $kind_version"

# The same flags as build-binaries.sh (k8s-ldflags.sh), so the compiles of the binaries both need are shared.
# shellcheck source=k8s-ldflags.sh
source "$e2e_dir/hack/k8s-ldflags.sh"
k8s_ldflags="$(k8s_ldflags "$k8s_version")"

# sig BINARY: what the Go toolchain recorded about how a binary was built: the main module (path, version,
# sum), the tags and the cgo setting. (With -trimpath it leaves out the ldflags; stamp checks those.)
sig() {
	go version -m "$1" 2>/dev/null | awk '
		$1 == "mod" { m = $2 " " $3 " " $4 }
		$1 == "build" && $2 ~ /^-tags=/ { t = $2 }
		$1 == "build" && $2 ~ /^CGO_ENABLED=/ { c = $2 }
		END { print m "|" t "|" c }'
}

# stamp NAME: the version the binary reports, which its version ldflags set.
stamp() {
	case "$1" in
	kubeadm) "$bin/$1" version -o short ;;
	kubectl) "$bin/$1" version --client -o json | jq -r .clientVersion.gitVersion ;;
	containerd-shim-runc-v2) "$bin/$1" -v ;;
	*) "$bin/$1" --version ;;
	esac 2>/dev/null | head -n 3 | tr '\n' ' '
}

# stale NAME WANT VERSION: why the cached binary must be rebuilt, nothing when it is current: it must carry
# the sig WANT and report VERSION.
stale() {
	local got
	[ -x "$bin/$1" ] || { echo "missing"; return; }
	got="$(sig "$bin/$1")"
	[ "$got" = "$2" ] || { echo "built as [$got], pinned as [$2]"; return; }
	got="$(stamp "$1")"
	case " $got " in *[\ v]"${3#v}"[\ +-]*) ;; *) echo "reports version [$got], want ${3}" ;; esac
}

# want MODULE TAGS CGO: the sig of a binary built from MODULE as pinned by e2e/go.mod.
want() { echo "$(pinned "$1")|${2:+-tags=$2}|CGO_ENABLED=$3"; }

# install_remote NAME MODULE VERSION PACKAGE LDFLAGS TAGS CGO: go install PACKAGE@VERSION (the module's own
# go.mod, as its release is built) into the cache, unless the cached binary matches.
install_remote() {
	local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5 tags=$6 cgo=$7 sum want why tmp
	sum="$(cd /tmp && go mod download -json "$module@$version" | jq -r .Sum)"
	want="$module $version $sum|${tags:+-tags=$tags}|CGO_ENABLED=$cgo"
	why="$(stale "$name" "$want" "$version")"
	[ -z "$why" ] && return
	echo "building $name ($why)" >&2
	tmp="$(mktemp -d "$cache/gobin.XXXXXX")"
	(cd /tmp && GOBIN="$tmp" CGO_ENABLED=$cgo go install -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" "$pkg@$version")
	mv "$tmp/$(basename "$pkg")" "$bin/$name"
	rm -rf "$tmp"
	why="$(stale "$name" "$want" "$version")"
	[ -z "$why" ] || die "$bin/$name was just built but does not match its pins: $why"
}

stage "binaries from the Go module proxy (containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, crictl $CRICTL_VERSION)"
ctd_ldflags="-s -w -X $CONTAINERD_MODULE/version.Version=$CONTAINERD_VERSION -X $CONTAINERD_MODULE/version.Package=$CONTAINERD_MODULE"
ctd_tags="no_aufs,no_zfs,no_btrfs,no_devmapper"
install_remote containerd "$CONTAINERD_MODULE" "$CONTAINERD_VERSION" "$CONTAINERD_MODULE/cmd/containerd" "$ctd_ldflags" "$ctd_tags" 0
install_remote containerd-shim-runc-v2 "$CONTAINERD_MODULE" "$CONTAINERD_VERSION" "$CONTAINERD_MODULE/cmd/containerd-shim-runc-v2" "$ctd_ldflags" "$ctd_tags" 0
install_remote ctr "$CONTAINERD_MODULE" "$CONTAINERD_VERSION" "$CONTAINERD_MODULE/cmd/ctr" "$ctd_ldflags" "$ctd_tags" 0
# runc links libseccomp (Debian's libseccomp-dev here, libseccomp2 in the node): kubeadm's static pods ask
# for the RuntimeDefault seccomp profile.
install_remote runc "$RUNC_MODULE" "$RUNC_VERSION" "$RUNC_MODULE" "-X main.version=${RUNC_VERSION#v}" seccomp 1
install_remote crictl "$CRICTL_MODULE" "$CRICTL_VERSION" "$CRICTL_MODULE/cmd/crictl" "-s -w -X $CRICTL_MODULE/pkg/version.Version=$CRICTL_VERSION" "" 0

stage "Kubernetes $k8s_version and etcd binaries from e2e/go.mod (cold: 20-25 min on 2 idle cores, 47 under load)"
# All static (CGO off): they run in one-binary images and in a node whose libc is not the host's. Stale ones
# are built by one go build, which shares the package compiles between them.
declare -A k8s_pkgs=(
	[kubelet]=k8s.io/kubernetes/cmd/kubelet
	[kubeadm]=k8s.io/kubernetes/cmd/kubeadm
	[kubectl]=k8s.io/kubernetes/cmd/kubectl
	[kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
	[kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
	[kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
)
k8s_want="$(want k8s.io/kubernetes "" 0)"
pkgs=()
for name in "${!k8s_pkgs[@]}"; do
	why="$(stale "$name" "$k8s_want" "$k8s_version")"
	if [ -n "$why" ]; then
		echo "building $name ($why)" >&2
		pkgs+=("${k8s_pkgs[$name]}")
	fi
done
etcd_want="$(want go.etcd.io/etcd/server/v3 "" 0)"
etcd_version="$(pinned go.etcd.io/etcd/server/v3 | cut -d' ' -f2)"
why="$(stale etcd "$etcd_want" "$etcd_version")"
if [ -n "$why" ]; then
	echo "building etcd ($why)" >&2
	tmp="$(mktemp -d "$cache/gobin.XXXXXX")"
	(cd "$e2e_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
	mv "$tmp/etcd" "$bin/etcd"
	rm -rf "$tmp"
	why="$(stale etcd "$etcd_want" "$etcd_version")"
	[ -z "$why" ] || die "etcd was just built but does not match its pins: $why"
fi
if [ ${#pkgs[@]} -gt 0 ]; then
	tmp="$(mktemp -d "$cache/gobin.XXXXXX")"
	(cd "$e2e_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$k8s_ldflags" -o "$tmp/" "${pkgs[@]}")
	mv "$tmp"/* "$bin/"
	rm -rf "$tmp"
fi
for name in "${!k8s_pkgs[@]}"; do
	why="$(stale "$name" "$k8s_want" "$k8s_version")"
	[ -z "$why" ] || die "$name was just built but does not match its pins: $why"
done

stage "pause and the load-balancer stand-in from e2e/kind/images"
# Built every time (the go build cache makes it a second): their source is this module's.
(cd "$e2e_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/pause" ./kind/images/pause)
(cd "$e2e_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/envoy" ./kind/images/lbproxy)

stage "Debian $DEBIAN_SUITE rootfs (debootstrap; cold: 3-10 min)"
mirror="$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${K8SCRYPTO_E2E_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
rootfs_key="$(printf '%s\n' "$DEBIAN_SUITE" "$mirror" "$DEBIAN_PACKAGES" | sha256sum | cut -c1-16)"
rootfs="$cache/rootfs-$DEBIAN_SUITE-$rootfs_key.tar"
if [ ! -s "$rootfs" ]; then
	command -v debootstrap >/dev/null || die "debootstrap missing (e2e/hack/docker.sh install installs it)"
	tmp="$(mktemp -d "$cache/rootfs.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" "$DEBIAN_SUITE" "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed, see $cache/debootstrap.log"
	rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
	tar -C "$tmp" --numeric-owner -cf "$rootfs.tmp" .
	mv "$rootfs.tmp" "$rootfs"
	rm -rf "$tmp"
	trap - EXIT
	find "$cache" -maxdepth 1 -name "rootfs-*.tar" ! -name "$(basename "$rootfs")" -delete
fi

docker info >/dev/null 2>&1 || die "no Docker engine answers (start one with e2e/hack/docker.sh start)"

# image_key IMAGE: the key label of a local image, empty when absent.
image_key() { docker image inspect -f '{{index .Config.Labels "dev.k8scrypto.e2e.key"}}' "$1" 2>/dev/null || true; }

stage "control-plane images"
mapfile -t images < <("$bin/kubeadm" config images list --kubernetes-version "$k8s_version" 2>/dev/null)
archives="$cache/images"
mkdir -p "$archives"
pause_image=""
declare -A image_of
for image in "${images[@]}"; do
	name="${image##*/}"; name="${name%%:*}"
	image_of[$name]=$image
	case "$name" in
	kube-apiserver | kube-controller-manager | kube-scheduler | etcd) entry="[\"/usr/local/bin/$name\"]" ;;
	pause) entry='["/pause"]'; pause_image=$image ;;
	*) continue ;; # kube-proxy and coredns: no kube-proxy (kubeProxyMode none), coredns stays Pending
	esac
	src="$bin/$name"
	key="$(cat "$src" | sha256sum | cut -c1-16)"
	archive="$archives/$name.tar"
	if [ "$(image_key "$image")" = "$key" ] && [ -s "$archive" ] && [ "$(cat "$archive.key" 2>/dev/null)" = "$key" ]; then
		continue
	fi
	echo "image $image" >&2
	tmp="$(mktemp -d "$cache/image.XXXXXX")"
	if [ "$name" = pause ]; then
		install -m 0755 "$src" "$tmp/pause"
	else
		install -D -m 0755 "$src" "$tmp/usr/local/bin/$name"
	fi
	tar -C "$tmp" --numeric-owner --owner=0 --group=0 -c . | docker import \
		--change "ENV PATH=/usr/local/bin:/usr/bin:/bin" --change "ENTRYPOINT $entry" \
		--change "LABEL dev.k8scrypto.e2e.key=$key" - "$image" >/dev/null
	rm -rf "$tmp"
	docker save -o "$archive.tmp" "$image"
	mv "$archive.tmp" "$archive"
	echo "$key" >"$archive.key"
done
[ -n "$pause_image" ] || die "kubeadm config images list names no pause image"
for name in kube-apiserver kube-controller-manager kube-scheduler etcd pause; do
	[ -s "$archives/$name.tar" ] || die "kubeadm config images list did not name $name"
done

# The node image's key: everything that goes into it.
node_key="$(
	{
		echo "$rootfs_key" "$k8s_version" "$kind_version" "$pause_image" "${images[*]}"
		sha256sum "$script" "$e2e_dir/hack/node-image.pins"
		for b in containerd containerd-shim-runc-v2 ctr runc crictl kubelet kubeadm kubectl; do sha256sum <"$bin/$b"; done
		cat "$archives"/*.key
	} | sha256sum | cut -c1-12
)"
node_image="k8scrypto-e2e/node:$k8s_version-$node_key"

stage "node image $node_image"
if [ "$(image_key "$node_image")" != "$node_key" ]; then
	stage_dir="$(mktemp -d "$cache/node.XXXXXX")"
	ctd_pid=""
	cleanup() {
		if [ -n "$ctd_pid" ]; then kill "$ctd_pid" 2>/dev/null || true; wait "$ctd_pid" 2>/dev/null || true; fi
		rm -rf "$stage_dir"
	}
	trap cleanup EXIT
	root="$stage_dir/rootfs"
	mkdir "$root"
	tar -C "$root" --numeric-owner -xf "$rootfs"

	# kind's images/base/files, with the Dockerfile's modes (the module cache is read-only).
	files="$kind_dir/images/base/files"
	install -m 0755 "$files"/usr/local/bin/* "$root/usr/local/bin/"
	mkdir -p "$root/kind/bin" "$root/LICENSES" "$root/etc/containerd" "$root/etc/default" "$root/etc/sysctl.d" \
		"$root/etc/systemd/system/kubelet.service.d" "$root/etc/kubernetes/manifests"
	install -m 0644 "$files"/kind/README.txt "$root/kind/"
	install -m 0755 "$files"/kind/bin/* "$root/kind/bin/"
	install -m 0644 "$files"/LICENSES/* "$root/LICENSES/"
	install -m 0644 "$files"/etc/crictl.yaml "$root/etc/"
	install -m 0644 "$files"/etc/containerd/* "$root/etc/containerd/"
	install -m 0644 "$files"/etc/default/* "$root/etc/default/"
	install -m 0644 "$files"/etc/sysctl.d/* "$root/etc/sysctl.d/"
	find "$files/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$root/etc/systemd/system/" \;
	install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
	chmod 755 "$root/kind" "$root/kind/bin"

	# The Dockerfile's systemd steps.
	find "$root/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
	rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
		"$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
		"$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
	echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
	ln -sf /usr/lib/systemd/systemd "$root/sbin/init"
	chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
	chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1

	# The binaries, where kind's image has them (kind's kubelet.service runs /usr/bin/kubelet).
	for b in containerd containerd-shim-runc-v2 ctr crictl; do
		install -m 0755 "$bin/$b" "$root/usr/local/bin/$b"
	done
	for b in kubelet kubeadm kubectl; do
		install -m 0755 "$bin/$b" "$root/usr/bin/$b"
	done
	install -m 0755 "$bin/runc" "$root/usr/local/sbin/runc"
	# Kubernetes' version, which kind reads from the node (pkg/build/nodeimage/const.go).
	echo "$k8s_version" >"$root/kind/version"

	# containerd's base runtime spec as the Dockerfile makes it, and kind's config with two changes: the
	# sandbox image is the pause image kubeadm names (what `kind build node-image` does), and
	# restrict_oom_score_adj, because this machine's missing CAP_SYS_RESOURCE forbids lowering
	# oom_score_adj and runc fails every sandbox without it (../../shared/reference/kind-offline.md).
	"$bin/ctr" oci spec |
		jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
		jq 'del(.process.rlimits)' >"$root/etc/containerd/cri-base.json"
	sed -i -e "s|^\(\s*sandbox_image\s*=\s*\).*|\1\"$pause_image\"|" \
		-e "s|^\(\s*restrict_oom_score_adj\s*=\s*\).*|\1true|" "$root/etc/containerd/config.toml"
	grep -q "sandbox_image = \"$pause_image\"" "$root/etc/containerd/config.toml" || die "could not set sandbox_image"
	grep -q "restrict_oom_score_adj = true" "$root/etc/containerd/config.toml" || die "could not set restrict_oom_score_adj"

	# The images, imported as `kind build node-image` does (pinned, not unpacked), by the node's own
	# containerd binary run here on the node's /var/lib/containerd.
	state="$stage_dir/state"
	mkdir -p "$state"
	cat >"$stage_dir/containerd.toml" <<-EOF
		version = 3
		root = "$root/var/lib/containerd"
		state = "$state"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim"]
		[grpc]
		  address = "$state/containerd.sock"
		[ttrpc]
		  address = "$state/containerd.sock.ttrpc"
		[debug]
		  address = ""
	EOF
	"$bin/containerd" --config "$stage_dir/containerd.toml" >"$stage_dir/containerd.log" 2>&1 &
	ctd_pid=$!
	for _ in $(seq 50); do [ -S "$state/containerd.sock" ] && break; sleep 0.2; done
	[ -S "$state/containerd.sock" ] || { cat "$stage_dir/containerd.log" >&2; die "containerd did not start"; }
	for name in kube-apiserver kube-controller-manager kube-scheduler etcd pause; do
		"$bin/ctr" --address "$state/containerd.sock" --namespace=k8s.io images import \
			--label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests "$archives/$name.tar" >/dev/null
	done
	listed="$("$bin/ctr" --address "$state/containerd.sock" --namespace=k8s.io images list -q)"
	for name in kube-apiserver kube-controller-manager kube-scheduler etcd pause; do
		grep -qxF "${image_of[$name]}" <<<"$listed" || die "${image_of[$name]} is not in the node's containerd after the import"
		echo "preloaded ${image_of[$name]}" >&2
	done
	kill "$ctd_pid"
	wait "$ctd_pid" 2>/dev/null || true
	ctd_pid=""

	# docker import takes no STOPSIGNAL, so one Dockerfile line on top (the classic builder, which needs no
	# registry for a local base).
	base_id="$(tar -C "$root" --numeric-owner -c . | docker import \
		--change "ENV container=docker" \
		--change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
		--change "LABEL dev.k8scrypto.e2e.key=$node_key" -)"
	printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$base_id" | DOCKER_BUILDKIT=0 docker build -q -t "$node_image" - >"$stage_dir/build.log" 2>&1 ||
		{ cat "$stage_dir/build.log" >&2; die "docker build (STOPSIGNAL) failed"; }
	cleanup
	trap - EXIT
	# Older node images of ours go; their layers are most of the cache's disk.
	docker image ls --format '{{.Repository}}:{{.Tag}}' k8scrypto-e2e/node | grep -vx "$node_image" | xargs -r docker rmi >/dev/null || true
fi
echo "$node_image" >"$cache/node-image"

# kind runs the load balancer with its own command (bash -c '... envoy -c /home/envoy/envoy.yaml ...'), so the
# image has bash and coreutils (kind also writes the files with mkdir, cp, chmod and mv) and no entrypoint.
stage "load-balancer stand-in $lb_image"
lb_key="$(
	{
		echo "$rootfs_key"
		sha256sum <"$bin/envoy"
	} | sha256sum | cut -c1-12
)"
if [ "$(image_key "$lb_image")" != "$lb_key" ]; then
	tmp="$(mktemp -d "$cache/lb.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	mkdir "$tmp/rootfs"
	tar -C "$tmp/rootfs" --numeric-owner -xf "$rootfs"
	install -m 0755 "$bin/envoy" "$tmp/rootfs/usr/local/bin/envoy"
	tar -C "$tmp/rootfs" --numeric-owner -c . | docker import \
		--change 'CMD ["/usr/local/bin/envoy", "-c", "/home/envoy/envoy.yaml"]' \
		--change "LABEL dev.k8scrypto.e2e.key=$lb_key" --change "LABEL dev.k8scrypto.e2e.stand-in=e2e/kind/images/lbproxy" \
		- "$lb_image" >/dev/null
	rm -rf "$tmp"
	trap - EXIT
fi
stage ""
echo "==> all done in $((SECONDS - total_start))s" >&2
echo "$node_image"
