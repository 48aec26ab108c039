package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5 * ms}, 5 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{4 * ms, 1 * ms, 2 * ms, 100 * ms}, 3 * ms},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseInitTrace(t *testing.T) {
	trace := `init internal/bytealg @0.008 ms, 0 ms clock, 0 bytes, 0 allocs
init k8s.io/component-base/metrics/legacyregistry @6.1 ms, 2.7 ms clock, 210672 bytes, 2002 allocs
k8scrypto dev (kubeadm v1.37.2)
init github.com/spf13/viper @7.0 ms, 0.050 ms clock, 30112 bytes, 230 allocs
`
	got, err := parseInitTrace(strings.NewReader(trace))
	if err != nil {
		t.Fatal(err)
	}
	want := []initEntry{
		{"internal/bytealg", 0},
		{"k8s.io/component-base/metrics/legacyregistry", 2700 * time.Microsecond},
		{"github.com/spf13/viper", 50 * time.Microsecond},
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %d entries, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseInitTrace(strings.NewReader("init a/b @1 ms, x ms clock, 0 bytes, 0 allocs\n")); err == nil {
		t.Error("a malformed clock value was accepted")
	}
}

func TestInitGroup(t *testing.T) {
	for pkg, want := range map[string]string{
		"crypto/internal/fips140/edwards25519":         "std",
		"k8s.io/component-base/metrics/legacyregistry": "k8s.io/component-base",
		"github.com/google/cel-go/parser":              "github.com/google/cel-go",
		"go.etcd.io/etcd/api/v3/authpb":                "go.etcd.io/etcd",
		"k8scrypto.dev/k8scrypto/pki":                  "k8scrypto.dev/k8scrypto",
	} {
		if got := initGroup(pkg); got != want {
			t.Errorf("initGroup(%s) = %s, want %s", pkg, got, want)
		}
	}
}

func TestJudge(t *testing.T) {
	ms := time.Millisecond
	tg := target{maxWall: 20 * ms, maxRatio: 0.3}
	for _, tc := range []struct {
		r    row
		want string
	}{
		{row{kubeadm: 100 * ms, k8scrypto: 19 * ms, k8scryptoKiB: 20 << 10}, "yes"},
		{row{kubeadm: 100 * ms, k8scrypto: 25 * ms, k8scryptoKiB: 20 << 10}, "no: time"},
		{row{kubeadm: 50 * ms, k8scrypto: 19 * ms, k8scryptoKiB: 20 << 10}, "no: ratio"},
		{row{kubeadm: 100 * ms, k8scrypto: 19 * ms, k8scryptoKiB: 41 << 10}, "no: memory"},
		{row{k8scrypto: 19 * ms, k8scryptoKiB: 20 << 10}, "no: ratio"}, // a ratio target needs kubeadm
	} {
		if _, got := tg.judge(tc.r); got != tc.want {
			t.Errorf("judge(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
	if want, _ := tg.judge(row{}); want != "< 20.0 ms, <= 0.30x, < 40 MiB" {
		t.Errorf("target text = %q", want)
	}
}

func TestMarkdownTable(t *testing.T) {
	var b bytes.Buffer
	writeMarkdown(&b, []string{"A", "B"}, [][]string{{"x", "1 ms"}})
	want := "| A | B |\n| --- | ---: |\n| x | 1 ms |\n"
	if b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
}
