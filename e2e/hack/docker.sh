#!/usr/bin/env bash
# A Docker engine for the kind tests (e2e/kind), on a machine that may have none.
#
#   docker.sh install   installs what the kind tests and the node-image build need from Debian, when
#                       missing: docker.io, jq, debootstrap, libseccomp-dev (runc's seccomp), gcc.
#   docker.sh start     install, then, when no engine answers `docker info`, write the runtime fix below and
#                       start dockerd in the background, recording that this script started it.
#   docker.sh stop      stop the dockerd that `start` started, and nothing else: an engine that was
#                       already running is left alone. Containers are not removed here (the tests delete
#                       their clusters); images and the data root stay, so the node image stays cached.
#   docker.sh status    say whether an engine answers and whether this script started it.
#
# The runtime fix (verified, see ../../../shared/reference/kind-offline.md §1): a privileged container asks
# for every capability, and runc fails with "unable to apply caps: operation not permitted" when the
# machine's capability bounding set lacks one (this VM lacks CAP_SYS_RESOURCE). kind always passes
# --privileged, so dockerd gets a default runtime that removes from the OCI spec every capability the
# bounding set lacks, then runs the real runc with the same arguments.
set -euo pipefail

state="${K8SCRYPTO_E2E_DOCKER_STATE:-/run/k8scrypto-e2e-docker}"
pidfile="$state/dockerd.pid"
log="${K8SCRYPTO_E2E_DOCKER_LOG:-/var/log/k8scrypto-e2e-dockerd.log}"
wrapper=/usr/local/libexec/k8scrypto-e2e/runc
runtime=k8scrypto-e2e-runc

say() { echo "docker.sh: $*" >&2; }
answers() { timeout 10 docker info >/dev/null 2>&1; }

need_root() {
	[ "$(id -u)" = 0 ] || { say "$1 needs root"; exit 1; }
}

install() {
	local missing=()
	command -v dockerd >/dev/null || missing+=(docker.io)
	command -v docker >/dev/null || missing+=(docker.io)
	command -v jq >/dev/null || missing+=(jq)
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	command -v gcc >/dev/null || missing+=(gcc libc6-dev)
	[ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
	command -v pkg-config >/dev/null || missing+=(pkg-config)
	[ ${#missing[@]} -eq 0 ] && return
	need_root "installing ${missing[*]}"
	say "installing ${missing[*]} from Debian"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# missing_caps: the names of the capabilities runc knows that the bounding set of this machine lacks.
missing_caps() {
	local bnd i
	bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
	local names=(CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID
		CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN
		CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE
		CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME
		CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP
		CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ
		CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE)
	for i in "${!names[@]}"; do
		if (((bnd >> i) & 1)); then :; else echo "${names[$i]}"; fi
	done
}

# runtime_fix: the runc wrapper, and daemon.json naming it the default runtime (other settings kept).
runtime_fix() {
	local runc caps
	runc="$(command -v runc || true)"
	[ -n "$runc" ] || { say "no runc on PATH (docker.io brings one)"; exit 1; }
	caps="$(missing_caps | jq -R . | jq -sc .)"
	mkdir -p "$(dirname "$wrapper")" /etc/docker
	# Quoted here-document: @RUNC@ and @CAPS@ are filled in by sed.
	sed -e "s|@RUNC@|$runc|g" -e "s|@CAPS@|$caps|g" >"$wrapper.tmp" <<'EOF'
#!/bin/sh
# Written by k8scrypto's e2e/hack/docker.sh: removes the capabilities this machine's bounding set lacks
# (@CAPS@) from the OCI spec runc is given (a bundle's config.json on create and run, the --process file on
# exec), then runs @RUNC@ with the same arguments. Without it every privileged container fails to start.
drop='@CAPS@'
# edit FILE FILTER: FILTER is the path of the capabilities object in FILE.
edit() {
	[ -f "$1" ] || return 0
	jq --argjson drop "$drop" "$2"' |= (if . == null then . else with_entries(.value |= (if type == "array" then map(select(. as $c | $drop | index($c) | not)) else . end)) end)' "$1" >"$1.k8scrypto" &&
		mv "$1.k8scrypto" "$1"
}
cmd="" bundle="." process="" prev=""
for a in "$@"; do
	case "$prev" in
	--bundle | -b) bundle="$a" ;;
	--process | -p) process="$a" ;;
	esac
	case "$a" in
	--bundle=*) bundle="${a#--bundle=}" ;;
	--process=*) process="${a#--process=}" ;;
	create | run | exec) [ -z "$cmd" ] && cmd="$a" ;;
	esac
	prev="$a"
done
case "$cmd" in
create | run) edit "$bundle/config.json" .process.capabilities ;;
exec) [ -n "$process" ] && edit "$process" .capabilities ;;
esac
exec @RUNC@ "$@"
EOF
	chmod 0755 "$wrapper.tmp"
	mv "$wrapper.tmp" "$wrapper"
	local current='{}'
	[ -s /etc/docker/daemon.json ] && current="$(cat /etc/docker/daemon.json)"
	echo "$current" | jq --arg name "$runtime" --arg path "$wrapper" \
		'.runtimes[$name] = {path: $path} | .["default-runtime"] = $name' >/etc/docker/daemon.json.tmp
	mv /etc/docker/daemon.json.tmp /etc/docker/daemon.json
}

started_by_us() {
	local pid
	[ -s "$pidfile" ] || return 1
	pid="$(cat "$pidfile")"
	[ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^dockerd '
}

start() {
	install
	if answers; then
		if started_by_us; then say "dockerd (pid $(cat "$pidfile")) started earlier by this script answers"; else say "a Docker engine answers; using it (not ours to stop)"; fi
		return
	fi
	need_root "starting dockerd"
	runtime_fix
	mkdir -p "$state"
	say "starting dockerd (log $log)"
	# Its own session, so that make's or the test's process group ending does not take it down.
	setsid dockerd >>"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 120); do
		if answers; then
			say "dockerd (pid $(cat "$pidfile")) answers: $(docker info -f '{{.ServerVersion}}, {{.Driver}}, cgroup v{{.CgroupVersion}}, default runtime {{.DefaultRuntime}}')"
			return
		fi
		if ! started_by_us; then break; fi
		sleep 0.5
	done
	say "dockerd did not come up; last lines of $log:"
	tail -n 20 "$log" >&2
	stop
	exit 1
}

stop() {
	if ! started_by_us; then
		rm -f "$pidfile"
		say "no dockerd of ours to stop"
		return
	fi
	local pid
	pid="$(cat "$pidfile")"
	say "stopping dockerd (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 60); do
		[ -e "/proc/$pid" ] || break
		sleep 0.5
	done
	if [ -e "/proc/$pid" ]; then
		say "dockerd (pid $pid) still running after 30s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

status() {
	if answers; then echo "a Docker engine answers"; else echo "no Docker engine answers"; fi
	if started_by_us; then echo "started by docker.sh: pid $(cat "$pidfile")"; fi
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 install|start|stop|status" >&2
	exit 2
	;;
esac
