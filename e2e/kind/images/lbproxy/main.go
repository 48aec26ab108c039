// Command lbproxy stands in for envoy in kind's load-balancer container, for the offline e2e tests only.
//
// kind v0.33.0 runs docker.io/envoyproxy/envoy for clusters with more than one control-plane node and
// drives it through files (sigs.k8s.io/kind/pkg/cluster/internal/loadbalancer): a bootstrap config at
// /home/envoy/envoy.yaml naming two dynamic files, a listener (lds.yaml: a TCP proxy on the control-plane
// port to the cluster "kube_apiservers") and that cluster (cds.yaml: the apiservers' host:port), which kind
// replaces with `mv` when nodes come and go. Envoy is in no registry or package reachable here, so
// e2e/hack/build-node-image.sh installs this program as `envoy` in an image under kind's name. It does
// what those files ask, and no more: it listens where lds.yaml says, forwards each TCP connection to the
// next backend of cds.yaml in turn (trying the following ones when a dial fails, within the cluster's
// connect_timeout), and rereads both files every half second. Envoy's active /healthz checks are not
// done; a backend that refuses connections is skipped.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/yaml"
)

func main() {
	bootstrap := flag.String("c", "/home/envoy/envoy.yaml", "envoy bootstrap config")
	flag.Parse()
	cds, lds, err := dynamicPaths(*bootstrap)
	if err != nil {
		log.Fatal(err)
	}
	p := &proxy{}
	var last [2][]byte
	for {
		c, cerr := os.ReadFile(cds) // #nosec G304 -- the paths kind's bootstrap file names, in the container
		l, lerr := os.ReadFile(lds) // #nosec G304 -- likewise
		if cerr == nil && lerr == nil && (!bytes.Equal(c, last[0]) || !bytes.Equal(l, last[1])) {
			cfg, err := parse(c, l)
			if err != nil {
				log.Printf("config not applied: %v", err)
			} else if err := p.apply(cfg); err != nil {
				log.Printf("config not applied: %v", err)
			} else {
				log.Printf("listening on %s, backends %v", cfg.listen, cfg.backends)
			}
			last = [2][]byte{c, l}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// dynamicPaths reads the cds and lds file paths from the bootstrap config.
func dynamicPaths(bootstrap string) (cds, lds string, err error) {
	b, err := os.ReadFile(bootstrap) // #nosec G304 -- the bootstrap file kind mounts
	if err != nil {
		return "", "", err
	}
	var c struct {
		DynamicResources struct {
			CDS struct {
				PathConfigSource struct{ Path string } `json:"path_config_source"`
			} `json:"cds_config"`
			LDS struct {
				PathConfigSource struct{ Path string } `json:"path_config_source"`
			} `json:"lds_config"`
		} `json:"dynamic_resources"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", "", fmt.Errorf("%s: %w", bootstrap, err)
	}
	cds, lds = c.DynamicResources.CDS.PathConfigSource.Path, c.DynamicResources.LDS.PathConfigSource.Path
	if cds == "" || lds == "" {
		return "", "", fmt.Errorf("%s: no cds_config or lds_config path", bootstrap)
	}
	return cds, lds, nil
}

type socketAddress struct {
	Address   string `json:"address"`
	PortValue int    `json:"port_value"`
}

func (s socketAddress) String() string { return net.JoinHostPort(s.Address, strconv.Itoa(s.PortValue)) }

// config is what the two files ask for: one listener, the backends of the cluster it names.
type config struct {
	listen         string
	backends       []string
	connectTimeout time.Duration
}

func parse(cds, lds []byte) (config, error) {
	var l struct {
		Resources []struct {
			Address struct {
				SocketAddress socketAddress `json:"socket_address"`
			} `json:"address"`
			FilterChains []struct {
				Filters []struct {
					TypedConfig struct {
						Cluster string `json:"cluster"`
					} `json:"typed_config"`
				} `json:"filters"`
			} `json:"filter_chains"`
		} `json:"resources"`
	}
	var c struct {
		Resources []struct {
			Name           string `json:"name"`
			ConnectTimeout string `json:"connect_timeout"`
			LoadAssignment struct {
				Endpoints []struct {
					LBEndpoints []struct {
						Endpoint struct {
							Address struct {
								SocketAddress socketAddress `json:"socket_address"`
							} `json:"address"`
						} `json:"endpoint"`
					} `json:"lb_endpoints"`
				} `json:"endpoints"`
			} `json:"load_assignment"`
		} `json:"resources"`
	}
	if err := yaml.Unmarshal(lds, &l); err != nil {
		return config{}, fmt.Errorf("lds: %w", err)
	}
	if err := yaml.Unmarshal(cds, &c); err != nil {
		return config{}, fmt.Errorf("cds: %w", err)
	}
	if len(l.Resources) == 0 {
		return config{}, errors.New("lds: no listener yet")
	}
	if len(l.Resources) > 1 {
		return config{}, fmt.Errorf("lds: %d listeners, the stand-in serves one", len(l.Resources))
	}
	ln := l.Resources[0]
	cluster := ""
	for _, fc := range ln.FilterChains {
		for _, f := range fc.Filters {
			if f.TypedConfig.Cluster != "" {
				cluster = f.TypedConfig.Cluster
			}
		}
	}
	cfg := config{listen: ln.Address.SocketAddress.String(), connectTimeout: time.Second}
	for _, r := range c.Resources {
		if r.Name != cluster {
			continue
		}
		if d, err := time.ParseDuration(r.ConnectTimeout); err == nil && d > 0 {
			cfg.connectTimeout = d
		}
		for _, e := range r.LoadAssignment.Endpoints {
			for _, le := range e.LBEndpoints {
				cfg.backends = append(cfg.backends, le.Endpoint.Address.SocketAddress.String())
			}
		}
	}
	if len(cfg.backends) == 0 {
		return config{}, fmt.Errorf("cds: cluster %q has no endpoints", cluster)
	}
	return cfg, nil
}

// proxy forwards connections from its one listener to the current backends, round robin.
type proxy struct {
	mu       sync.Mutex
	listener net.Listener
	listen   string
	cfg      atomic.Pointer[config]
	next     atomic.Uint64
}

func (p *proxy) apply(cfg config) error {
	p.cfg.Store(&cfg)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener != nil && p.listen == cfg.listen {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	if p.listener != nil {
		_ = p.listener.Close()
	}
	p.listener, p.listen = ln, cfg.listen
	go p.serve(ln)
	return nil
}

func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(client net.Conn) {
	defer client.Close()
	cfg := p.cfg.Load()
	start := p.next.Add(1)
	var backend net.Conn
	var errs []error
	for i := range len(cfg.backends) {
		addr := cfg.backends[(start+uint64(i))%uint64(len(cfg.backends))]
		c, err := net.DialTimeout("tcp", addr, cfg.connectTimeout)
		if err == nil {
			backend = c
			break
		}
		errs = append(errs, err)
	}
	if backend == nil {
		log.Printf("%s: no backend: %v", client.RemoteAddr(), errors.Join(errs...))
		return
	}
	defer backend.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	<-done
}
