#!/usr/bin/env bash
# `make kind`: the kind tests (e2e/kind) with everything they need, and nothing of theirs left running.
#   1. e2e/hack/docker.sh start: Docker from Debian, the runtime fix, dockerd started when none answers;
#   2. e2e/hack/build-node-image.sh: the offline node image and the load-balancer stand-in, built or
#      checked against their pins (cold: about 1 hour on 2 busy cores, warm: under 20 s);
#   3. go test ./kind/... (the kind tests, and the unit tests of the image programs);
#   4. e2e/hack/docker.sh stop, on success, failure or interruption: only a dockerd step 1 started.
# CI is passed through: with CI=true (.ci/run) a missing Docker engine or node image fails the tests, without
# it they skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'bash hack/docker.sh stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
if bash hack/docker.sh start; then
	echo "==> docker: ${SECONDS}s" >&2
	s=$SECONDS
	bash hack/build-node-image.sh >/dev/null
	echo "==> node image: $((SECONDS - s))s" >&2
else
	echo "kind-test: no Docker engine could be started; the kind tests will say so" >&2
fi
s=$SECONDS
status=0
go test -count=1 -timeout "${KIND_TEST_TIMEOUT:-40m}" -v ${KIND_TEST_RUN:+-run "$KIND_TEST_RUN"} ./kind/... || status=$?
echo "==> kind tests: $((SECONDS - s))s (all: $((SECONDS - start))s)" >&2
exit $status
