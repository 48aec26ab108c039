package encryption

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// FileHash identifies an encryption configuration file as kube-apiserver does in its
// apiserver_encryption_config_controller_last_config_info metric: "sha256:" and the hex SHA-256 of the
// file's bytes (k8s.io/apiserver/pkg/server/options/encryptionconfig, computeEncryptionConfigHash).
func FileHash(data []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(data)) }

// Metric names kube-apiserver exposes on /metrics about its encryption configuration.
const (
	metricLastConfigInfo      = "apiserver_encryption_config_controller_last_config_info"
	metricLastReloadTimestamp = "apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds"
)

// APIServerView is what one kube-apiserver reports about the encryption configuration it runs.
type APIServerView struct {
	// IDHash is the hash of the apiserver's identity (one per apiserver of an HA control plane).
	IDHash string `json:"apiserverIDHash"`
	// ConfigHash is the FileHash of the configuration it loaded last (at start or by automatic reload).
	ConfigHash string `json:"configHash"`
	// LastReload and LastFailedReload are the times of its last successful and failed automatic
	// reloads; nil when there was none (or automatic reload is off).
	LastReload       *time.Time `json:"lastReload,omitempty"`
	LastFailedReload *time.Time `json:"lastFailedReload,omitempty"`
}

// ReloadFailing reports whether the apiserver's latest automatic reload failed: it keeps running its
// previous configuration.
func (v APIServerView) ReloadFailing() bool {
	return v.LastFailedReload != nil && (v.LastReload == nil || v.LastFailedReload.After(*v.LastReload))
}

// ErrNoEncryptionMetrics is returned for /metrics without the encryption configuration's metrics: the
// apiserver runs without --encryption-provider-config.
var ErrNoEncryptionMetrics = errors.New("kube-apiserver reports no encryption configuration (is it started with --encryption-provider-config?)")

// ParseAPIServerMetrics reads an APIServerView from kube-apiserver's /metrics (Prometheus text format).
func ParseAPIServerMetrics(text []byte) (APIServerView, error) {
	var v APIServerView
	// Only the encryption families: the whole page is megabytes of other metrics, any of which could trip
	// the parser without bearing on the answer.
	var ours bytes.Buffer
	for line := range bytes.Lines(text) {
		name := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("# HELP ")), []byte("# TYPE "))
		if bytes.HasPrefix(name, []byte("apiserver_encryption_config_controller_")) {
			ours.Write(line)
		}
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(&ours)
	if err != nil {
		return v, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	if f := families[metricLastConfigInfo]; f != nil {
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				v.IDHash, v.ConfigHash = label(m, "apiserver_id_hash"), label(m, "hash")
			}
		}
	}
	if f := families[metricLastReloadTimestamp]; f != nil {
		for _, m := range f.GetMetric() {
			value := m.GetGauge().GetValue()
			if value <= 0 || math.IsNaN(value) || math.IsInf(value, 0) {
				continue
			}
			sec, frac := math.Modf(value)
			t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
			switch label(m, "status") {
			case "success":
				v.LastReload = &t
			case "failure":
				v.LastFailedReload = &t
			}
		}
	}
	if v.ConfigHash == "" {
		return v, ErrNoEncryptionMetrics
	}
	return v, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
