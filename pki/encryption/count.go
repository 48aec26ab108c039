package encryption

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// Labels for values that carry no key prefix.
const (
	LabelPlaintext = "plaintext" // stored unencrypted (protobuf "k8s\x00" or JSON)
	LabelUnknown   = "unknown"   // k8s:enc: with a prefix k8scrypto does not recognise
)

// Classify names what a stored value is encrypted with, from its prefix only: "secretbox:<key>",
// "aescbc:<key>", "aesgcm:<key>", "kms-v1:<name>", "kms-v2:<name>", or LabelPlaintext / LabelUnknown. It
// never looks past the prefix.
func Classify(value []byte) string {
	rest, ok := bytes.CutPrefix(value, []byte("k8s:enc:"))
	if !ok {
		return LabelPlaintext
	}
	// <provider>:<version>:<key or kms name>:<ciphertext>
	parts := bytes.SplitN(rest, []byte(":"), 4)
	if len(parts) < 4 || len(parts[2]) == 0 {
		return LabelUnknown
	}
	provider, version, name := string(parts[0]), string(parts[1]), string(parts[2])
	switch {
	case (provider == Secretbox || provider == AESCBC || provider == AESGCM) && version == "v1":
		return provider + ":" + name
	case provider == KMS && (version == "v1" || version == "v2"):
		return "kms-" + version + ":" + name
	}
	return LabelUnknown
}

// LabelsOf lists the labels Classify gives to values written with each key and kms provider of cfg; a
// label not in this set is a value that cannot be read with this file.
func LabelsOf(cfg *apiserverv1.EncryptionConfiguration) map[string]bool {
	out := map[string]bool{}
	for _, rc := range cfg.Resources {
		addLabels(out, rc.Providers)
	}
	return out
}

func addLabels(out map[string]bool, providers []apiserverv1.ProviderConfiguration) {
	for _, p := range providers {
		for _, l := range providerLabels(p) {
			out[l] = true
		}
	}
}

// providerLabels are the labels of values one provider can read, its write key's first.
func providerLabels(p apiserverv1.ProviderConfiguration) []string {
	switch typ := ProviderType(p); typ {
	case Identity:
		return []string{LabelPlaintext}
	case KMS:
		v := p.KMS.APIVersion
		if v == "" {
			v = "v1"
		}
		return []string{"kms-" + v + ":" + p.KMS.Name}
	default:
		var out []string
		for _, k := range KeysOf(p) {
			out = append(out, typ+":"+k.Name)
		}
		return out
	}
}

// Labels say, for the values of one resource, which labels the apiserver can read (Known; nil: do not
// check) and which one it writes (Write).
type Labels struct {
	Known map[string]bool
	Write string
}

// LabelsFor returns the Labels of resource, a name as the configuration spells it: the apiserver uses the
// first entry that names it, and only that entry's providers, so a value another entry could read is
// still unreadable for this resource. A wildcard ("*.*") or an unknown name gets the whole file's labels.
func LabelsFor(cfg *apiserverv1.EncryptionConfiguration, resource string) Labels {
	for _, rc := range cfg.Resources {
		if !slices.Contains(rc.Resources, resource) {
			continue
		}
		l := Labels{Known: map[string]bool{}}
		addLabels(l.Known, rc.Providers)
		if len(rc.Providers) > 0 {
			if first := providerLabels(rc.Providers[0]); len(first) > 0 {
				l.Write = first[0]
			}
		}
		return l
	}
	return Labels{Known: LabelsOf(cfg)}
}

// KV is one key and value read from etcd.
type KV struct {
	Key   []byte
	Value []byte
}

// RangeFunc reads up to limit keys in [start, end) at revision rev (0: current) and returns them in key
// order, the revision read, and whether more keys follow. The etcd client implements it; tests use a map.
type RangeFunc func(ctx context.Context, start, end string, rev, limit int64) (kvs []KV, readRev int64, more bool, err error)

// Count is how many values under a prefix carry each label.
type Count struct {
	Resource string         `json:"resource"`
	Prefix   string         `json:"prefix"`
	Total    int            `json:"total"`
	ByLabel  map[string]int `json:"byLabel"`
	// Unreadable counts values whose label is not in the configuration: no apiserver with this file
	// can read them. UnreadablePlaintext is the part of them stored in plaintext: the resource has no
	// identity provider to read them with (they predate encryption), which no key can fix.
	Unreadable          int `json:"unreadable"`
	UnreadablePlaintext int `json:"unreadablePlaintext"`
	// NotUnderWriteKey counts readable values stored under anything but the write key: what
	// "encryption reencrypt" still has to rewrite before older keys can be pruned.
	NotUnderWriteKey int `json:"notUnderWriteKey"`
}

// CountPrefix pages through every key under prefix at one revision and counts values by label. Values
// are looked at only for their prefix and dropped with their page.
func CountPrefix(ctx context.Context, rng RangeFunc, resource, prefix string, pageSize int64, labels Labels) (Count, error) {
	c := Count{Resource: resource, Prefix: prefix, ByLabel: map[string]int{}}
	end := prefixEnd(prefix)
	start := prefix
	var rev int64
	for {
		kvs, readRev, more, err := rng(ctx, start, end, rev, pageSize)
		if err != nil {
			return c, fmt.Errorf("reading %s from etcd: %w", prefix, err)
		}
		if rev == 0 {
			rev = readRev // every later page at the first page's revision: one consistent snapshot
		}
		for _, kv := range kvs {
			label := Classify(kv.Value)
			c.Total++
			c.ByLabel[label]++
			switch {
			case labels.Known != nil && !labels.Known[label]:
				c.Unreadable++
				if label == LabelPlaintext {
					c.UnreadablePlaintext++
				}
			case labels.Write != "" && label != labels.Write:
				c.NotUnderWriteKey++
			}
		}
		if !more || len(kvs) == 0 {
			return c, nil
		}
		start = string(kvs[len(kvs)-1].Key) + "\x00"
	}
}

// prefixEnd is the smallest key after every key that starts with prefix.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // the whole key space
}

// etcdPaths are the storage paths of built-in resources not stored under their own resource name
// (kube-apiserver's storage factory and registries).
var etcdPaths = map[string]string{
	"services":                  "services/specs",
	"endpoints":                 "services/endpoints",
	"nodes":                     "minions",
	"ingresses":                 "ingress",
	"customresourcedefinitions": "apiextensions.k8s.io/customresourcedefinitions",
	"apiservices":               "apiregistration.k8s.io/apiservices",
}

// EtcdPrefixes maps the resource names of a configuration to the etcd key prefixes their values live
// under (etcdPrefix is kube-apiserver's --etcd-prefix, /registry by default). Built-in resources live at
// <etcd-prefix>/<resource>/, custom resources at <etcd-prefix>/<group>/<resource>/. A wildcard covers the
// whole etcd prefix; then only that one prefix is returned, labelled "*".
func EtcdPrefixes(etcdPrefix string, resources []string) [][2]string {
	etcdPrefix = "/" + strings.Trim(etcdPrefix, "/")
	var out [][2]string
	for _, r := range resources {
		gr := schema.ParseGroupResource(r)
		if gr.Resource == "*" {
			return [][2]string{{"*", etcdPrefix + "/"}}
		}
		path := gr.Resource
		if p, ok := etcdPaths[gr.Resource]; ok {
			path = p
		} else if gr.Group != "" && strings.Contains(gr.Group, ".") && !strings.HasSuffix(gr.Group, ".k8s.io") {
			path = gr.Group + "/" + gr.Resource // custom resources keep their group in the path
		}
		entry := [2]string{r, etcdPrefix + "/" + path + "/"}
		if !slices.Contains(out, entry) {
			out = append(out, entry)
		}
	}
	return out
}
