package phases

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// kubeadm's check-expiration names, in its order (sorted), plus kubelet.conf.
var expiryCertNames = []string{"admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "controller-manager.conf",
	"etcd-healthcheck-client", "etcd-peer", "etcd-server", "front-proxy-client", "kubelet.conf", "scheduler.conf", "super-admin.conf"}

func rowsBy(rows []CertificateExpiration) map[string]CertificateExpiration {
	out := map[string]CertificateExpiration{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out
}

// bootstrapKubelet rewrites kubelet.conf as the kubelet leaves it after TLS bootstrap: a reference to its
// rotated certificate file instead of embedded data.
func bootstrapKubelet(t *testing.T, e *renewEnv) string {
	t.Helper()
	path := filepath.Join(e.kubeDir, "kubelet.conf")
	kc, err := LoadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodePrivateKey(kc.ClientKey)
	pem := filepath.Join(e.dir, "kubelet-pki", "kubelet-client-current.pem")
	os.MkdirAll(filepath.Dir(pem), 0o700)
	if err := os.WriteFile(pem, append(pki.EncodeCert(kc.ClientCert), keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	u := kc.Config.AuthInfos[kc.User]
	u.ClientCertificateData, u.ClientKeyData = nil, nil
	u.ClientCertificate, u.ClientKey = pem, pem
	if err := clientcmd.WriteToFile(*kc.Config, path); err != nil {
		t.Fatal(err)
	}
	return pem
}

func TestCheckExpiration(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(100 * day)
	info := CheckExpiration(e.loadConfig(), e.kubeDir, now)
	if info.APIVersion != "k8scrypto.dev/v1alpha1" || info.Kind != "CertificateExpirationInfo" || !info.CheckTime.Equal(now) {
		t.Errorf("header %s %s %s", info.APIVersion, info.Kind, info.CheckTime)
	}
	var names []string
	for _, r := range info.Certificates {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, expiryCertNames) {
		t.Errorf("certificates %v, want %v", names, expiryCertNames)
	}
	var caNames []string
	for _, r := range info.CertificateAuthorities {
		caNames = append(caNames, r.Name)
		if r.CAName != "" || r.Kind != KindCA || r.ExternallyManaged || r.Missing {
			t.Errorf("CA row %+v", r)
		}
		if r.ResidualTime != int64((3650*day-100*day)/time.Second) {
			t.Errorf("%s residual %d", r.Name, r.ResidualTime)
		}
	}
	if !slices.Equal(caNames, []string{"ca", "etcd-ca", "front-proxy-ca"}) {
		t.Errorf("CAs %v", caNames)
	}
	rows := rowsBy(info.Certificates)
	for name, ca := range map[string]string{"apiserver": "ca", "etcd-peer": "etcd-ca", "front-proxy-client": "front-proxy-ca", "admin.conf": "ca", "kubelet.conf": "ca"} {
		r := rows[name]
		cert, _ := e.pair(name)
		if r.CAName != ca || r.Missing || r.ExternallyManaged || r.Error != "" || !r.ExpirationDate.Equal(cert.NotAfter) ||
			r.ResidualTime != int64(cert.NotAfter.Sub(now)/time.Second) || r.Serial != cert.SerialNumber.String() || r.SHA256 != pki.Fingerprint(cert.Raw) {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if r := rows["admin.conf"]; r.Kind != KindKubeconfig || r.Path != filepath.Join(e.kubeDir, "admin.conf") {
		t.Errorf("admin.conf row %+v", r)
	}

	// External front-proxy CA, a missing certificate, an unreadable one, and a bootstrapped kubelet.
	os.Remove(filepath.Join(e.certDir, "front-proxy-ca.key"))
	os.Remove(filepath.Join(e.certDir, "etcd", "peer.crt"))
	os.Remove(filepath.Join(e.kubeDir, "super-admin.conf"))
	os.WriteFile(filepath.Join(e.certDir, "apiserver.crt"), []byte("garbage"), 0o644)
	pem := bootstrapKubelet(t, e)
	info = CheckExpiration(e.loadConfig(), e.kubeDir, now)
	rows = rowsBy(info.Certificates)
	cas := rowsBy(info.CertificateAuthorities)
	if !rows["front-proxy-client"].ExternallyManaged || !cas["front-proxy-ca"].ExternallyManaged || rows["apiserver-kubelet-client"].ExternallyManaged {
		t.Errorf("externally managed: %+v %+v", rows["front-proxy-client"], cas["front-proxy-ca"])
	}
	if r := rows["etcd-peer"]; !r.Missing || r.Optional || !r.ExpirationDate.IsZero() {
		t.Errorf("etcd-peer %+v", r)
	}
	if r := rows["super-admin.conf"]; !r.Missing || !r.Optional {
		t.Errorf("super-admin.conf %+v", r)
	}
	if r := rows["apiserver"]; !strings.Contains(r.Error, "apiserver.crt") || r.Missing {
		t.Errorf("apiserver %+v", r)
	}
	if r := rows["kubelet.conf"]; r.ManagedBy != "kubelet" || r.Path != pem || r.ExpirationDate.IsZero() {
		t.Errorf("kubelet.conf %+v", r)
	}
	problems := info.ExpiringWithin(time.Hour)
	want := []string{"apiserver: ", "etcd-peer: missing"}
	if len(problems) != len(want) {
		t.Fatalf("problems %v, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(problems[i], w) {
			t.Errorf("problem %q, want prefix %q", problems[i], w)
		}
	}
}

func TestExpiringWithin(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	info := CheckExpiration(e.loadConfig(), e.kubeDir, pkitest.Now.Add(300*day))
	if p := info.ExpiringWithin(60 * day); len(p) != 0 {
		t.Errorf("65 days left, 60 days asked: %v", p)
	}
	if p := info.ExpiringWithin(70 * day); len(p) != len(expiryCertNames) || !strings.HasPrefix(p[0], "admin.conf: expires on") {
		t.Errorf("within 70 days: %v", p)
	}
	info = CheckExpiration(e.loadConfig(), e.kubeDir, pkitest.Now.Add(366*day))
	p := info.ExpiringWithin(time.Second)
	if len(p) != len(expiryCertNames) || !strings.Contains(p[0], "expired on") {
		t.Errorf("expired: %v", p)
	}
	info = CheckExpiration(e.loadConfig(), e.kubeDir, pkitest.Now.Add(3651*day))
	if p := info.ExpiringWithin(time.Second); len(p) != len(expiryCertNames)+3 {
		t.Errorf("CAs expired too: %d problems", len(p))
	}
}

func TestWritePrometheusParses(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	// A directory name that needs escaping in a label value.
	odd := filepath.Join(e.dir, `kube "odd" \dir`)
	if err := os.Rename(e.kubeDir, odd); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(odd, "scheduler.conf"))
	os.Remove(filepath.Join(e.certDir, "etcd", "ca.key"))
	now := pkitest.Now.Add(10 * day)
	info := CheckExpiration(e.loadConfig(), odd, now)
	var buf bytes.Buffer
	if err := info.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("not valid Prometheus text: %v\n%s", err, buf.String())
	}
	labels := func(m *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, l := range m.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	find := func(family string, name string) *dto.Metric {
		f := fams[family]
		if f == nil {
			t.Fatalf("family %s missing", family)
		}
		if f.GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s is %s, want gauge", family, f.GetType())
		}
		for _, m := range f.GetMetric() {
			if labels(m)["name"] == name {
				return m
			}
		}
		return nil
	}
	api, _ := e.pair("apiserver")
	m := find(MetricExpiration, "apiserver")
	if m == nil || m.GetGauge().GetValue() != float64(api.NotAfter.Unix()) {
		t.Errorf("apiserver expiration %v, want %d", m, api.NotAfter.Unix())
	}
	if l := labels(m); l["ca"] != "ca" || l["kind"] != "certificate" || l["path"] != filepath.Join(e.certDir, "apiserver.crt") {
		t.Errorf("apiserver labels %v", l)
	}
	if m := find(MetricNotBefore, "apiserver"); m.GetGauge().GetValue() != float64(api.NotBefore.Unix()) {
		t.Errorf("apiserver not-before %v", m)
	}
	if m := find(MetricExpiration, "admin.conf"); labels(m)["path"] != filepath.Join(odd, "admin.conf") {
		t.Errorf("escaped path label %q", labels(m)["path"])
	}
	if find(MetricExpiration, "scheduler.conf") != nil || find(MetricMissing, "scheduler.conf").GetGauge().GetValue() != 1 ||
		find(MetricMissing, "apiserver").GetGauge().GetValue() != 0 {
		t.Error("missing scheduler.conf is not reported as missing only")
	}
	if find(MetricExternallyManaged, "etcd-peer").GetGauge().GetValue() != 1 || find(MetricExternallyManaged, "etcd-ca").GetGauge().GetValue() != 1 ||
		find(MetricExternallyManaged, "apiserver").GetGauge().GetValue() != 0 {
		t.Error("externally managed gauge")
	}
	if l := labels(find(MetricExpiration, "etcd-ca")); l["kind"] != "certificate-authority" || l["ca"] != "" {
		t.Errorf("CA labels %v", l)
	}
	if got := fams[MetricCheckTime].GetMetric()[0].GetGauge().GetValue(); got != float64(now.Unix()) {
		t.Errorf("check time %v", got)
	}
	if n := len(fams[MetricMissing].GetMetric()); n != len(expiryCertNames)+3 {
		t.Errorf("%d missing-gauge series, want one per row", n)
	}
}

// BenchmarkCheckExpiration is the work of one check-expiration run after process start (issue 6 wants the
// whole command under 20 ms): 15 certificate files and 5 kubeconfigs read and parsed.
func BenchmarkCheckExpiration(b *testing.B) {
	e := newRenewEnv(b, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	for b.Loop() {
		CheckExpiration(cfg, e.kubeDir, pkitest.Now)
	}
}
