package encryption

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
)

// apiserverMetrics is kube-apiserver v1.37's /metrics around the encryption families, as it prints them
// after one successful and one failed automatic reload.
const apiserverMetrics = `# HELP apiserver_audit_event_total [ALPHA] Counter of audit events generated and sent to the audit backend.
# TYPE apiserver_audit_event_total counter
apiserver_audit_event_total 0
# HELP apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds [ALPHA] Timestamp of the last successful or failed automatic reload of encryption configuration split by apiserver identity.
# TYPE apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds gauge
apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash="sha256:1111",status="failure"} 1.7645e+09
apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash="sha256:1111",status="success"} 1.76450000025e+09
# HELP apiserver_encryption_config_controller_automatic_reloads_total [ALPHA] Total number of reload successes and failures of encryption configuration split by apiserver identity.
# TYPE apiserver_encryption_config_controller_automatic_reloads_total counter
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:1111",status="failure"} 1
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:1111",status="success"} 2
# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the last applied encryption configuration with hash as label, split by apiserver identity.
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:1111",hash="sha256:abcd"} 1
# HELP weird_metric something the parser would choke on if it read it
weird_metric{le="+Inf" 3 4 5
`

func TestParseAPIServerMetrics(t *testing.T) {
	v, err := ParseAPIServerMetrics([]byte(apiserverMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if v.IDHash != "sha256:1111" || v.ConfigHash != "sha256:abcd" {
		t.Errorf("view = %+v, want the identity and config hashes of last_config_info", v)
	}
	if v.LastReload == nil || !v.LastReload.Equal(time.Unix(1764500000, 250_000_000)) || v.LastFailedReload == nil || !v.LastFailedReload.Equal(time.Unix(1764500000, 0)) {
		t.Errorf("reload times = %v / %v", v.LastReload, v.LastFailedReload)
	}
	if v.ReloadFailing() {
		t.Error("ReloadFailing with a success after the failure")
	}
	failing := strings.Replace(apiserverMetrics, `status="failure"} 1.7645e+09`, `status="failure"} 1.7646e+09`, 1)
	if v, err := ParseAPIServerMetrics([]byte(failing)); err != nil || !v.ReloadFailing() {
		t.Errorf("failure after the last success: ReloadFailing = false (err %v)", err)
	}

	none := "# TYPE apiserver_audit_event_total counter\napiserver_audit_event_total 0\n"
	if _, err := ParseAPIServerMetrics([]byte(none)); !errors.Is(err, ErrNoEncryptionMetrics) {
		t.Errorf("no encryption metrics: err = %v, want ErrNoEncryptionMetrics", err)
	}
	broken := "apiserver_encryption_config_controller_last_config_info{hash=\"sha256:ab} 1\n"
	if _, err := ParseAPIServerMetrics([]byte(broken)); err == nil || errors.Is(err, ErrNoEncryptionMetrics) {
		t.Errorf("malformed sample: err = %v, want a parse error", err)
	}
}

func TestFileHashIsTheAPIServers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "encryption-config.yaml")
	data := []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := encryptionconfig.GetEncryptionConfigHash(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := FileHash(data); got != want {
		t.Errorf("FileHash = %s, kube-apiserver's hash of the same file = %s", got, want)
	}
}
