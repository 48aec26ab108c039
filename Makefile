# k8scrypto — see README.md. Targets follow kind's shape.
GO        ?= go
BIN       ?= bin
STATICCHECK_VERSION ?= v0.8.2
GOSEC_VERSION       ?= v2.30.0

.PHONY: all build test unit e2e e2e-binaries kind kind-image bench bench-go bench-kubeadm fuzz lint fmt clean

all: build

build:
	$(GO) build -trimpath -o $(BIN)/k8scrypto ./cmd/k8scrypto

## test: unit tests, the end-to-end suite against a real kube-apiserver and etcd, then kubeadm itself in kind
test: unit e2e kind

unit:
	$(GO) test -count=1 ./...

## e2e-binaries: build kube-apiserver, kube-controller-manager, kubeadm and etcd from e2e/go.mod into a cache (first time 15-40 min on 2 cores: 38 measured on busy ones)
e2e-binaries:
	bash e2e/hack/build-binaries.sh

## e2e: the suite (CI=true: a missing binary fails, as make has just built them), then BenchmarkReencrypt
## (10,000 Secrets, k8scrypto against the get-put baseline, both etcd topologies) so the numbers are in the log
e2e: e2e-binaries
	cd e2e && CI=true $(GO) test -count=1 -timeout 60m . ./internal/...
	cd e2e && CI=true $(GO) test -count=1 -run '^$$' -bench BenchmarkReencrypt -benchtime 1x -timeout 30m .

## kind: the kind tests (e2e/kind): Docker started when none answers (and stopped after, whatever happens),
## the offline node image built or checked (e2e/hack/build-node-image.sh; cold 11 min after make e2e-binaries, warm 6-21 s), then
## go test ./kind/. CI is passed through: CI=true (.ci/run) fails where Docker cannot be had, otherwise skip.
kind:
	bash e2e/hack/kind-test.sh

## kind-image: only the node image and the load-balancer stand-in (needs a running Docker engine)
kind-image:
	bash e2e/hack/build-node-image.sh

## bench: the Go benchmarks (full certs+sa runs for every algorithm, RSA-4096 included), then the timing
## comparison with the real kubeadm (hack/bench.sh), which alone needs the e2e binaries
BENCHTIME ?= 3x
bench: bench-go bench-kubeadm

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./phases/ ./pki/...

bench-kubeadm: e2e-binaries
	bash hack/bench.sh

fuzz:
	bash hack/fuzz.sh

## lint: vet, gofmt, staticcheck and gosec on both modules. e2e is a module of its own: staticcheck's ./...
## stops at its go.mod, so both tools also run from e2e/ (the root gosec run skips e2e, not to report it twice)
lint:
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION) -quiet -exclude-dir=e2e ./...
	cd e2e && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd e2e && $(GO) run github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION) -quiet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
