package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type report struct {
	results               []result
	keygen                []time.Duration
	inits                 initTraces
	startup               []startupRow
	runs, cpus            int
	loadBefore, loadAfter string
}

// row is one line of the table.
type row struct {
	name                     string
	kubeadm, k8scrypto       time.Duration // medians of wall time; kubeadm 0 when it has no counterpart
	kubeadmCPU, k8sCPU       time.Duration // medians of user+system time
	kubeadmKiB, k8scryptoKiB int64         // largest peak RSS over the runs
	target                   string
	met                      string
}

func (r result) row() row {
	out := row{name: r.s.name, k8scrypto: medianWall(r.k8scrypto), k8sCPU: medianCPU(r.k8scrypto), k8scryptoKiB: peak(r.k8scrypto)}
	if len(r.kubeadm) > 0 {
		out.kubeadm, out.kubeadmCPU, out.kubeadmKiB = medianWall(r.kubeadm), medianCPU(r.kubeadm), peak(r.kubeadm)
	}
	out.target, out.met = r.s.target.judge(out)
	return out
}

// judge says what the target is and whether the row meets it ("yes", or "no: " and what fails).
func (t target) judge(r row) (string, string) {
	var want, fails []string
	if t.maxWall > 0 {
		want = append(want, "< "+ms(t.maxWall))
		if r.k8scrypto >= t.maxWall {
			fails = append(fails, "time")
		}
	}
	if t.maxRatio > 0 {
		want = append(want, fmt.Sprintf("<= %.2fx", t.maxRatio))
		if r.kubeadm == 0 || ratio(r.k8scrypto, r.kubeadm) > t.maxRatio {
			fails = append(fails, "ratio")
		}
	}
	want = append(want, fmt.Sprintf("< %d MiB", maxRSSKiB/1024))
	if r.k8scryptoKiB >= maxRSSKiB {
		fails = append(fails, "memory")
	}
	if len(fails) > 0 {
		return strings.Join(want, ", "), "no: " + strings.Join(fails, ", ")
	}
	return strings.Join(want, ", "), "yes"
}

func (rep report) write(w io.Writer, format string) error {
	var rows []row
	for _, r := range rep.results {
		rows = append(rows, r.row())
	}
	head := []string{"OPERATION", "KUBEADM", "K8SCRYPTO", "RATIO", "KUBEADM CPU", "K8SCRYPTO CPU", "KUBEADM PEAK", "K8SCRYPTO PEAK", "TARGET", "MET"}
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		kubeadm, rat, kubeadmCPU, kubeadmMiB := "-", "-", "-", "-"
		if r.kubeadm > 0 {
			kubeadm, rat, kubeadmCPU, kubeadmMiB = ms(r.kubeadm), fmt.Sprintf("%.2fx", ratio(r.k8scrypto, r.kubeadm)), ms(r.kubeadmCPU), mib(r.kubeadmKiB)
		}
		cells = append(cells, []string{r.name, kubeadm, ms(r.k8scrypto), rat, kubeadmCPU, ms(r.k8sCPU), kubeadmMiB, mib(r.k8scryptoKiB), r.target, r.met})
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Medians of %d alternating runs (wall time; peak = largest maximum RSS of any run), %d CPUs, load average %s before and %s after.\n\n",
		rep.runs, rep.cpus, rep.loadBefore, rep.loadAfter)
	if format == "markdown" {
		writeMarkdown(&b, head, cells)
	} else {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, c := range append([][]string{head}, cells...) {
			fmt.Fprintln(tw, strings.Join(c, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	b.WriteString("\n")
	if format == "markdown" {
		b.WriteString("```text\n")
	}
	rep.writeFloor(&b, rows)
	rep.writeStartup(&b)
	rep.writeInits(&b)
	writeSplit(&b, rows)
	if format == "markdown" {
		b.WriteString("```\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeMarkdown(b *bytes.Buffer, head []string, cells [][]string) {
	line := func(c []string) { b.WriteString("| " + strings.Join(c, " | ") + " |\n") }
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
		if i > 0 && i < 8 {
			sep[i] = "---:"
		}
	}
	line(sep)
	for _, c := range cells {
		line(c)
	}
}

// writeFloor compares the RSA-2048 runs with the key-generation floor: the mean single-key time times the
// number of keys, spread over every CPU.
func (rep report) writeFloor(b *bytes.Buffer, rows []row) {
	if len(rep.keygen) == 0 {
		return
	}
	mean := meanDuration(rep.keygen)
	floor := mean * pkiKeys / time.Duration(rep.cpus)
	fmt.Fprintf(b, "RSA-2048 floor: %d keys x %s mean keygen (in-process, %d keys: median %s, from %s to %s) / %d CPUs = %s.\n",
		pkiKeys, ms(mean), len(rep.keygen), ms(median(rep.keygen)), ms(slices.Min(rep.keygen)), ms(slices.Max(rep.keygen)), rep.cpus, ms(floor))
	for _, r := range rows {
		if strings.HasPrefix(r.name, "full PKI RSA-2048") {
			fmt.Fprintf(b, "  %s: %s = %.2fx the floor (%s above it); kubeadm, one key at a time: %s = %.2fx.\n",
				r.name, ms(r.k8scrypto), ratio(r.k8scrypto, floor), ms(r.k8scrypto-floor), ms(r.kubeadm), ratio(r.kubeadm, floor))
		}
	}
	b.WriteString("\n")
}

// writeStartup compares the start of "version" with processes that do nothing: on a VM where a page fault
// costs tens of microseconds, the faults of a large binary's start are most of its time.
func (rep report) writeStartup(b *bytes.Buffer) {
	rows := slices.Clone(rep.startup)
	for _, r := range rep.results {
		if r.s.name == "version" {
			rows = append(rows, startupRow{name: "k8scrypto version", samples: r.k8scrypto}, startupRow{name: "kubeadm version", samples: r.kubeadm})
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("Start-up (medians): wall, CPU, minor page faults, peak RSS.\n")
	for _, r := range rows {
		faults := mapSamples(r.samples, func(x sample) time.Duration { return time.Duration(x.faults) })
		fmt.Fprintf(b, "  %-26s %9s %9s %6d faults %9s\n", r.name, ms(medianWall(r.samples)), ms(medianCPU(r.samples)), int64(median(faults)), mib(peak(r.samples)))
	}
	if len(rep.startup) == 2 {
		t, g := rep.startup[0].samples, rep.startup[1].samples
		tf := median(mapSamples(t, func(x sample) time.Duration { return time.Duration(x.faults) }))
		gf := median(mapSamples(g, func(x sample) time.Duration { return time.Duration(x.faults) }))
		if gf > tf {
			fmt.Fprintf(b, "  cost of a page fault here: about %.0f µs (CPU difference / fault difference of the two empty programs)\n",
				float64(medianCPU(g)-medianCPU(t))/float64(time.Microsecond)/float64(gf-tf))
		}
	}
	b.WriteString("\n")
}

func (rep report) writeInits(b *bytes.Buffer) {
	for _, t := range []struct {
		name string
		runs [][]initEntry
	}{{"k8scrypto version", rep.inits.k8scrypto}, {"kubeadm version", rep.inits.kubeadm}} {
		if len(t.runs) == 0 {
			continue
		}
		var totals []time.Duration
		groups := map[string]time.Duration{}
		pkgs := 0
		for _, run := range t.runs {
			var total time.Duration
			for _, e := range run {
				total += e.clock
				groups[initGroup(e.pkg)] += e.clock / time.Duration(len(t.runs))
			}
			totals = append(totals, total)
			pkgs = len(run)
		}
		fmt.Fprintf(b, "Package initialisation of %s (GODEBUG=inittrace=1, median of %d): %s in %d packages. Largest:\n",
			t.name, len(t.runs), ms(median(totals)), pkgs)
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		slices.SortFunc(names, func(x, y string) int { return cmp.Compare(groups[y], groups[x]) })
		for _, g := range names[:min(8, len(names))] {
			fmt.Fprintf(b, "  %-40s %s\n", g, ms(groups[g]))
		}
	}
	b.WriteString("\n")
}

// writeSplit splits the ECDSA run into start-up and planning (the dry run) and the rest.
func writeSplit(b *bytes.Buffer, rows []row) {
	var full, dry time.Duration
	for _, r := range rows {
		switch r.name {
		case "full PKI ECDSA-P256: init certs+sa (1 run)":
			full = r.k8scrypto
		case "full PKI ECDSA-P256: init --dry-run (no keys, no writes)":
			dry = r.k8scrypto
		}
	}
	if full > 0 && dry > 0 {
		fmt.Fprintf(b, "ECDSA-P256 full PKI: %s start-up, configuration and planning (dry run) + %s keys, signing and the crash-safe write of 22 files.\n",
			ms(dry), ms(full-dry))
	}
}

type initEntry struct {
	pkg   string
	clock time.Duration
}

type initTraces struct{ k8scrypto, kubeadm [][]initEntry }

// initTrace runs "version" of both tools n times with GODEBUG=inittrace=1 and parses the traces.
func (b *bench) initTrace(n int) (initTraces, error) {
	var out initTraces
	for range n {
		for _, t := range []struct {
			bin  string
			args []string
			dst  *[][]initEntry
		}{{b.o.k8scrypto, []string{"version"}, &out.k8scrypto}, {b.o.kubeadm, []string{"version", "-o", "short"}, &out.kubeadm}} {
			cmd := exec.Command(t.bin, t.args...) // #nosec G204 -- the two binaries under test
			cmd.Env = append(childEnv(), "GODEBUG=inittrace=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return out, fmt.Errorf("%s version: %w", t.bin, err)
			}
			entries, err := parseInitTrace(&stderr)
			if err != nil {
				return out, err
			}
			*t.dst = append(*t.dst, entries)
		}
	}
	return out, nil
}

// parseInitTrace reads the runtime's lines "init PKG @T ms, C ms clock, B bytes, A allocs".
func parseInitTrace(r io.Reader) ([]initEntry, error) {
	var out []initEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			return nil, fmt.Errorf("inittrace line %q: %w", sc.Text(), err)
		}
		out = append(out, initEntry{pkg: f[1], clock: time.Duration(v * float64(time.Millisecond))})
	}
	return out, sc.Err()
}

// initGroup names the module a package most likely belongs to: "std" for the standard library, three path
// elements for github.com, two otherwise.
func initGroup(pkg string) string {
	parts := strings.Split(pkg, "/")
	switch {
	case !strings.Contains(parts[0], "."):
		return "std"
	case parts[0] == "github.com" && len(parts) >= 3:
		return strings.Join(parts[:3], "/")
	case len(parts) >= 2:
		return strings.Join(parts[:2], "/")
	}
	return pkg
}

func medianWall(s []sample) time.Duration {
	return median(mapSamples(s, func(x sample) time.Duration { return x.wall }))
}

func medianCPU(s []sample) time.Duration {
	return median(mapSamples(s, func(x sample) time.Duration { return x.cpu }))
}

func mapSamples(s []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

func peak(s []sample) int64 {
	var m int64
	for _, x := range s {
		m = max(m, x.rssKiB)
	}
	return m
}

// median of an odd count is the middle value; of an even count, the mean of the two middle values.
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func meanDuration(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// ms prints a duration in milliseconds: one decimal under 100 ms, none above.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 100 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
