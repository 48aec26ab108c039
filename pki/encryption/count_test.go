package encryption

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"testing"
)

func TestClassify(t *testing.T) {
	for in, want := range map[string]string{
		"k8s:enc:secretbox:v1:key-1:\x01\x02":      "secretbox:key-1",
		"k8s:enc:aescbc:v1:key1:cipher:with:colon": "aescbc:key1",
		"k8s:enc:aesgcm:v1:k:":                     "aesgcm:k",
		"k8s:enc:kms:v2:vault:xyz":                 "kms-v2:vault",
		"k8s:enc:kms:v1:old:xyz":                   "kms-v1:old",
		"k8s\x00\x0a\x02v1":                        LabelPlaintext,
		`{"kind":"Secret"}`:                        LabelPlaintext,
		"":                                         LabelPlaintext,
		"k8s:enc:secretbox:v1:":                    LabelUnknown,
		"k8s:enc:secretbox:v1::x":                  LabelUnknown,
		"k8s:enc:rot13:v1:k:x":                     LabelUnknown,
		"k8s:enc:aescbc:v9:k:x":                    LabelUnknown,
	} {
		if got := Classify([]byte(in)); got != want {
			t.Errorf("Classify(%q) = %q, want %q", in, got, want)
		}
	}
}

// memEtcd is a sorted key space answering RangeFunc, recording the revisions asked for.
type memEtcd struct {
	kv    map[string]string
	revs  []int64
	calls int
	fail  int // fail the call with this number (1-based)
}

func (m *memEtcd) rng(_ context.Context, start, end string, rev, limit int64) ([]KV, int64, bool, error) {
	m.calls++
	if m.calls == m.fail {
		return nil, 0, false, errors.New("etcdserver: request timed out")
	}
	m.revs = append(m.revs, rev)
	var keys []string
	for k := range m.kv {
		if k >= start && k < end {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	more := int64(len(keys)) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]KV, len(keys))
	for i, k := range keys {
		out[i] = KV{Key: []byte(k), Value: []byte(m.kv[k])}
	}
	return out, 42, more, nil
}

func TestCountPrefixPagesAtOneRevision(t *testing.T) {
	m := &memEtcd{kv: map[string]string{
		"/registry/secretsX":            "k8s:enc:aescbc:v1:zzz:c", // not under /registry/secrets/
		"/registry/configmaps/a/b":      "k8s\x00",
		"/registry/secrets/\xff":        "k8s:enc:aescbc:v1:gone:c",
		"/registry/secrets/default/old": "k8s:enc:aescbc:v1:key-old:c",
	}}
	for i := range 7 {
		m.kv[fmt.Sprintf("/registry/secrets/ns/s%02d", i)] = "k8s:enc:secretbox:v1:key-new:c"
	}
	for i := range 3 {
		m.kv[fmt.Sprintf("/registry/secrets/plain/p%d", i)] = "k8s\x00\x0a"
	}
	known := map[string]bool{"secretbox:key-new": true, "aescbc:key-old": true}
	c, err := CountPrefix(context.Background(), m.rng, "secrets", "/registry/secrets/", 4, Labels{Known: known, Write: "secretbox:key-new"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Total != 12 || c.ByLabel["secretbox:key-new"] != 7 || c.ByLabel[LabelPlaintext] != 3 || c.ByLabel["aescbc:key-old"] != 1 || c.ByLabel["aescbc:gone"] != 1 {
		t.Fatalf("count = %+v", c)
	}
	// Plaintext is unreadable without identity, and "gone" is not in the file.
	if c.Unreadable != 4 || c.UnreadablePlaintext != 3 {
		t.Errorf("unreadable = %d (%d plaintext), want 4 (3 plaintext)", c.Unreadable, c.UnreadablePlaintext)
	}
	// key-old is readable but not the write key: reencrypt's work.
	if c.NotUnderWriteKey != 1 {
		t.Errorf("not under the write key = %d, want 1", c.NotUnderWriteKey)
	}
	if m.calls != 3 {
		t.Errorf("%d range calls for 12 keys in pages of 4, want 3", m.calls)
	}
	if m.revs[0] != 0 || m.revs[1] != 42 || m.revs[2] != 42 {
		t.Errorf("revisions asked = %v: later pages must read the first page's revision", m.revs)
	}

	m.calls, m.fail = 0, 2
	if _, err := CountPrefix(context.Background(), m.rng, "secrets", "/registry/secrets/", 4, Labels{}); err == nil {
		t.Error("an etcd error was swallowed")
	}
}

// TestLabelsFor: a resource reads with its own entry's providers only; plaintext is readable for an entry
// with identity and not for one without, whatever other entries say.
func TestLabelsFor(t *testing.T) {
	key := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	cfg, err := Parse([]byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: new, secret: ` + key(1) + `}, {name: old, secret: ` + key(2) + `}]}
- resources: [configmaps]
  providers:
  - aesgcm: {keys: [{name: cm, secret: ` + key(3) + `}]}
  - identity: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := LabelsFor(cfg, "secrets")
	if s.Write != "secretbox:new" || !s.Known["secretbox:old"] || s.Known[LabelPlaintext] || s.Known["aesgcm:cm"] {
		t.Errorf("secrets: %+v", s)
	}
	c := LabelsFor(cfg, "configmaps")
	if c.Write != "aesgcm:cm" || !c.Known[LabelPlaintext] || c.Known["secretbox:new"] {
		t.Errorf("configmaps: %+v", c)
	}
	if all := LabelsFor(cfg, "*.*"); all.Write != "" || !all.Known["secretbox:new"] || !all.Known[LabelPlaintext] {
		t.Errorf("wildcard: %+v", all)
	}
}

func TestLabelsOf(t *testing.T) {
	cfg := cfgWithKeys("k1", "k2")
	got := LabelsOf(cfg)
	if !got["aescbc:k1"] || !got["aescbc:k2"] || !got[LabelPlaintext] || len(got) != 3 {
		t.Errorf("labels = %v", got)
	}
}

func TestEtcdPrefixes(t *testing.T) {
	got := EtcdPrefixes("/registry", []string{"secrets", "configmaps", "services", "deployments.apps", "ingresses.networking.k8s.io", "pandas.awesome.bears.example", "secrets"})
	want := [][2]string{
		{"secrets", "/registry/secrets/"},
		{"configmaps", "/registry/configmaps/"},
		{"services", "/registry/services/specs/"},
		{"deployments.apps", "/registry/deployments/"},
		{"ingresses.networking.k8s.io", "/registry/ingress/"},
		{"pandas.awesome.bears.example", "/registry/awesome.bears.example/pandas/"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("EtcdPrefixes =\n%v\nwant\n%v", got, want)
	}
	if got := EtcdPrefixes("/custom/", []string{"secrets", "*.apps"}); fmt.Sprint(got) != fmt.Sprint([][2]string{{"*", "/custom/"}}) {
		t.Errorf("wildcard: %v", got)
	}
	if prefixEnd("/registry/secrets/") != "/registry/secrets0" || prefixEnd("a\xff") != "b" {
		t.Error("prefixEnd")
	}
}
