// Command bench times k8scrypto against the real kubeadm on the same kubeadm configuration, alternating the
// two tools run by run, and prints the medians, their ratio, peak memory and the targets of issue 6. It is
// what "make bench" runs (hack/bench.sh builds both binaries first).
//
// kubeadm reads kubeconfigs from the hard-coded /etc/kubernetes, so it always runs with --rootfs pointing at
// a fresh temporary tree (as root, or in a user namespace where this process is not root): nothing outside
// the temporary directory is ever read or written. k8scrypto gets the same tree with --cert-dir,
// --kubeconfig-dir, --audit-log and --backup-dir.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-noop" {
		return // the start-up floor of a small Go program (see startupFloor)
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
}

type options struct {
	kubeadm, k8scrypto string
	runs               int
	format             string
	only               *regexp.Regexp
	keep               bool
	keygens            int
}

func run(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o options
	var only string
	fl.StringVar(&o.kubeadm, "kubeadm", "", "path of the kubeadm v1.37.2 binary")
	fl.StringVar(&o.k8scrypto, "k8scrypto", "", "path of the k8scrypto binary")
	fl.IntVar(&o.runs, "runs", 7, "timed runs per tool and operation (the median is reported)")
	fl.StringVar(&o.format, "format", "text", "table format: text or markdown")
	fl.StringVar(&only, "only", "", "run only the operations whose name matches this regular expression")
	fl.BoolVar(&o.keep, "keep", false, "keep the temporary directory")
	fl.IntVar(&o.keygens, "keygens", 24, "RSA-2048 keys generated in-process to measure the key-generation floor")
	if err := fl.Parse(args); err != nil {
		return err
	}
	switch {
	case o.kubeadm == "" || o.k8scrypto == "":
		return errors.New("-kubeadm and -k8scrypto are required (run it through hack/bench.sh)")
	case o.runs < 1:
		return fmt.Errorf("-runs: invalid value %d: must be at least 1", o.runs)
	case o.format != "text" && o.format != "markdown":
		return fmt.Errorf("-format: unknown format %q (use text or markdown)", o.format)
	}
	var err error
	if o.only, err = regexp.Compile(only); err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	for _, p := range []*string{&o.kubeadm, &o.k8scrypto} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
		if info, err := os.Stat(*p); err != nil || info.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file (build it with \"make e2e-binaries\" / \"make build\")", *p)
		}
	}
	work, err := os.MkdirTemp("", "k8scrypto-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stderr, "keeping %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{o: o, work: work, log: stderr}
	return b.main(stdout)
}

type bench struct {
	o    options
	work string
	log  io.Writer
	// fixture is a kubeadm-made PKI with the four control-plane kubeconfigs, copied into every renewal
	// and expiry run.
	fixture string
	seq     int
}

func (b *bench) main(stdout io.Writer) error {
	loadBefore := loadAvg()
	if err := b.makeFixture(); err != nil {
		return err
	}
	var results []result
	for _, s := range scenarios() {
		if !b.o.only.MatchString(s.name) {
			continue
		}
		fmt.Fprintf(b.log, "%s ...\n", s.name)
		r, err := b.measure(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		results = append(results, r)
	}
	fmt.Fprintf(b.log, "measuring RSA-2048 key generation in-process (%d keys) ...\n", b.o.keygens)
	keygen := measureKeygen(b.o.keygens)
	fmt.Fprintf(b.log, "measuring the start-up floor ...\n")
	floor, err := b.startupFloor()
	if err != nil {
		return err
	}
	fmt.Fprintf(b.log, "tracing package initialisation ...\n")
	inits, err := b.initTrace(5)
	if err != nil {
		return err
	}
	rep := report{
		results: results, keygen: keygen, inits: inits, startup: floor, runs: b.o.runs,
		loadBefore: loadBefore, loadAfter: loadAvg(), cpus: runtime.NumCPU(),
	}
	return rep.write(stdout, b.o.format)
}

// sample is one timed run of one tool (the sum over its processes; the peak is the largest process's).
type sample struct {
	wall, cpu time.Duration
	rssKiB    int64
	faults    int64 // minor page faults: most of a process start on a VM where each costs tens of µs
}

// result is one operation measured on both tools.
type result struct {
	s                  scenario
	kubeadm, k8scrypto []sample
}

// measure runs s alternately with each tool, in a fresh directory every time: one untimed warm-up each,
// then o.runs timed runs, kubeadm first on even runs and k8scrypto first on odd ones.
func (b *bench) measure(s scenario) (result, error) {
	r := result{s: s}
	var kubeadmFiles, k8sFiles []string
	for i := -1; i < b.o.runs; i++ {
		tools := []string{"kubeadm", "k8scrypto"}
		if i%2 != 0 {
			tools = []string{"k8scrypto", "kubeadm"}
		}
		for _, tool := range tools {
			if tool == "kubeadm" && s.kubeadm == nil {
				continue
			}
			root, err := b.prepare(s)
			if err != nil {
				return r, err
			}
			var smp sample
			if tool == "kubeadm" {
				smp, err = b.exec(root, true, s.kubeadm(root))
			} else {
				for _, argv := range s.k8scrypto(root) {
					one, err2 := b.exec(root, false, argv)
					if err = err2; err != nil {
						break
					}
					smp.wall += one.wall
					smp.cpu += one.cpu
					smp.faults += one.faults
					smp.rssKiB = max(smp.rssKiB, one.rssKiB)
				}
			}
			if err != nil {
				return r, err
			}
			if s.verify != nil {
				files, err := s.verify(root, b.fixture)
				if err != nil {
					return r, fmt.Errorf("%s did not do the work: %w", tool, err)
				}
				if tool == "kubeadm" {
					kubeadmFiles = files
				} else {
					k8sFiles = files
				}
			}
			if err := os.RemoveAll(root); err != nil {
				return r, err
			}
			if i < 0 {
				continue // warm-up: page cache, binaries
			}
			if tool == "kubeadm" {
				r.kubeadm = append(r.kubeadm, smp)
			} else {
				r.k8scrypto = append(r.k8scrypto, smp)
			}
		}
	}
	if s.kubeadm != nil && s.verify != nil && !slices.Equal(kubeadmFiles, k8sFiles) {
		return r, fmt.Errorf("the tools did not write the same files:\n  kubeadm:   %s\n  k8scrypto: %s",
			strings.Join(kubeadmFiles, " "), strings.Join(k8sFiles, " "))
	}
	return r, nil
}

// prepare makes a fresh root for one run: the configuration, and the fixture when the operation needs an
// existing PKI.
func (b *bench) prepare(s scenario) (string, error) {
	b.seq++
	root := filepath.Join(b.work, fmt.Sprintf("run-%04d", b.seq))
	if s.needsPKI {
		if err := copyTree(b.fixture, root); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(root, 0o750); err != nil {
		return "", err
	}
	return root, writeConfig(root, s.algorithm)
}

// makeFixture builds the PKI that renewal and expiry checks run on, with kubeadm itself: "init phase certs
// all" and the kubeconfigs of the control plane. kubelet.conf is left out on purpose: on a real node it
// references the kubelet's rotated certificate, and kubeadm does not renew it.
func (b *bench) makeFixture() error {
	b.fixture = filepath.Join(b.work, "fixture")
	if err := os.MkdirAll(b.fixture, 0o750); err != nil {
		return err
	}
	if err := writeConfig(b.fixture, ""); err != nil {
		return err
	}
	cmds := [][]string{{"init", "phase", "certs", "all", "--config", "/kubeadm.yaml"}}
	for _, kc := range []string{"admin", "super-admin", "controller-manager", "scheduler"} {
		cmds = append(cmds, []string{"init", "phase", "kubeconfig", kc, "--config", "/kubeadm.yaml"})
	}
	for _, c := range cmds {
		if _, err := b.exec(b.fixture, true, c); err != nil {
			return fmt.Errorf("making the fixture PKI with kubeadm: %w", err)
		}
	}
	return nil
}

// exec runs one process with stdout discarded and returns its wall time, CPU time and peak RSS. kubeadm
// runs chrooted into root (--rootfs).
func (b *bench) exec(root string, kubeadm bool, args []string) (sample, error) {
	bin := b.o.k8scrypto
	if kubeadm {
		bin = b.o.kubeadm
		args = append([]string{"--rootfs", root}, args...)
	}
	cmd := exec.Command(bin, args...) // #nosec G204 -- the two binaries under test, named by hack/bench.sh
	cmd.Dir = root
	cmd.Env = childEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if kubeadm && os.Geteuid() != 0 {
		// chroot needs CAP_SYS_CHROOT: give kubeadm root in a user namespace of its own.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		}
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return sample{}, errors.New("no resource usage for the child process on this platform")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return sample{wall: wall, cpu: cpu, rssKiB: ru.Maxrss, faults: ru.Minflt}, nil
}

// startupFloor times processes that do nothing, o.runs times each, alternating: /bin/true and this
// program with -noop (a Go binary with the standard library only). What the machine charges to start any
// process bounds what "version" can reach.
func (b *bench) startupFloor() ([]startupRow, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rows := []startupRow{{name: "/bin/true", argv: []string{"/bin/true"}}, {name: "Go program doing nothing", argv: []string{self, "-noop"}}}
	for i := -1; i < b.o.runs; i++ {
		for j := range rows {
			cmd := exec.Command(rows[j].argv[0], rows[j].argv[1:]...) // #nosec G204 -- /bin/true and this program
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("%s: %w", rows[j].name, err)
			}
			wall := time.Since(start)
			ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				return nil, errors.New("no resource usage for the child process on this platform")
			}
			if i >= 0 {
				rows[j].samples = append(rows[j].samples, sample{wall: wall, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rssKiB: ru.Maxrss, faults: ru.Minflt})
			}
		}
	}
	return rows, nil
}

type startupRow struct {
	name    string
	argv    []string
	samples []sample
}

// childEnv is this environment without K8SCRYPTO_* settings and GODEBUG, which would change what is timed.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "K8SCRYPTO_") && !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return env
}

// writeConfig writes the one kubeadm configuration both tools read: kubeadm as /kubeadm.yaml in its
// chroot, k8scrypto as <root>/kubeadm.yaml (its flags then point the certificate directory into root).
func writeConfig(root string, alg string) error {
	cfg := `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
  bindPort: 6443
nodeRegistration:
  name: bench-node
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
certificatesDir: /etc/kubernetes/pki
`
	if alg != "" {
		cfg += "encryptionAlgorithm: " + alg + "\n"
	}
	return os.WriteFile(filepath.Join(root, "kubeadm.yaml"), []byte(cfg), 0o600)
}

// copyTree copies a directory of regular files, keeping their modes; both trees are opened as roots, so
// nothing outside them is read or written whatever they contain.
func copyTree(from, to string) error {
	if err := os.MkdirAll(to, 0o750); err != nil {
		return err
	}
	src, err := os.OpenRoot(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenRoot(to)
	if err != nil {
		return err
	}
	defer dst.Close()
	return fs.WalkDir(src.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return dst.Mkdir(rel, info.Mode().Perm())
		}
		data, err := src.ReadFile(rel)
		if err != nil {
			return err
		}
		return dst.WriteFile(rel, data, info.Mode().Perm())
	})
}

// measureKeygen times RSA-2048 key generation in this process, one key at a time; prime search makes
// single keys vary a lot, so the floor uses the mean.
func measureKeygen(n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err) // crypto/rand failing is not a benchmark result
		}
		out = append(out, time.Since(start))
	}
	return out
}

// loadAvg is the 1-minute load average ("?" where /proc is absent).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}
