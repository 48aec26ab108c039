package phases

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// metricsServer is a kube-apiserver /metrics that reports config hash after asked polls, before that
// "sha256:old"; failed adds a failed reload newer than the last success.
func metricsServer(t *testing.T, hash string, after int32, failed bool) (APIServer, *atomic.Int32) {
	t.Helper()
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r) // no EndpointSlices: one apiserver, the kubeconfig's
			return
		}
		h := "sha256:old"
		if asked.Add(1) > after {
			h = hash
		}
		fmt.Fprintln(w, "# TYPE apiserver_encryption_config_controller_last_config_info gauge")
		fmt.Fprintln(w, "# TYPE apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds gauge")
		fmt.Fprintf(w, "apiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:aa\",hash=%q} 1\n", h)
		fmt.Fprintln(w, `apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash="sha256:aa",status="success"} 1.7e+09`)
		if failed {
			fmt.Fprintln(w, `apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash="sha256:aa",status="failure"} 1.8e+09`)
		}
	}))
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return APIServer{Kubeconfig: kubeconfig, Timeout: 5 * time.Second, PollInterval: time.Millisecond}, &asked
}

// TestWaitRuns: without Wait, a file the apiserver has not loaded is refused at once (exit 3, naming the
// retry command); with Wait, the step goes on once the apiserver reports the file; a failed reload ends the
// wait at once; a wait that runs out refuses.
func TestWaitRuns(t *testing.T) {
	const want = "sha256:new"
	ctx := context.Background()
	a, asked := metricsServer(t, want, 3, false)
	_, err := a.WaitRuns(ctx, "promote", "/pki/encryption-config.yaml", want, "k8scrypto encryption rotate promote --wait")
	var nl *NotLoadedError
	if !errors.As(err, &nl) || nl.ExitCode() != 3 || !strings.Contains(err.Error(), `"k8scrypto encryption rotate promote --wait"`) || asked.Load() != 1 {
		t.Fatalf("no wait: err %v after %d polls", err, asked.Load())
	}
	a.Wait = time.Minute
	v, err := a.WaitRuns(ctx, "promote", "/pki/encryption-config.yaml", want, "retry")
	if err != nil || !v.RunsThisFile || asked.Load() != 4 {
		t.Fatalf("wait: %+v, %v after %d polls; want the 4th poll to see the file", v, err, asked.Load())
	}

	failing, asked := metricsServer(t, want, 100, true)
	failing.Wait = time.Minute
	if _, err := failing.WaitRuns(ctx, "prune", "f", want, "retry"); !errors.As(err, &nl) || !strings.Contains(err.Error(), "FAILED") || asked.Load() != 1 {
		t.Errorf("failed reload: err %v after %d polls; want an immediate refusal naming the failure", err, asked.Load())
	}

	slow, _ := metricsServer(t, want, 1<<30, false)
	slow.Wait, slow.PollInterval = 20*time.Millisecond, 5*time.Millisecond
	if _, err := slow.WaitRuns(ctx, "reencrypt", "f", want, "retry"); !errors.As(err, &nl) {
		t.Errorf("a wait that runs out: err %v", err)
	}
	if v, err := (APIServer{}).WaitRuns(ctx, "promote", "f", want, "retry"); v != nil || err != nil {
		t.Errorf("no kubeconfig: %v %v, want nothing asked", v, err)
	}
}

// TestAdviseEncryption pins the Next line of each measured state; the command lines repeat the run's flags.
func TestAdviseEncryption(t *testing.T) {
	args := StepArgs{Kubeconfig: " --kubeconfig /a.conf", Etcd: " --etcd-endpoints https://e:2379"}
	loaded := &APIServerEncryption{RunsThisFile: true}
	waiting := &APIServerEncryption{}
	for _, tc := range []struct {
		name     string
		stage    encryption.Stage
		api      *APIServerEncryption
		etcd     *EtcdCounts
		next     string
		problems int
	}{
		{"prepared, not loaded", encryption.StagePrepared, waiting, nil, `"k8scrypto encryption rotate promote --kubeconfig /a.conf --wait" waits for it`, 1},
		{"prepared, loaded", encryption.StagePrepared, loaded, nil, `"k8scrypto encryption rotate promote --kubeconfig /a.conf --wait" once every apiserver`, 0},
		{"promoted, not loaded", encryption.StagePromoted, waiting, nil, `"k8scrypto encryption reencrypt --kubeconfig /a.conf --wait" waits for it`, 1},
		{"promoted, not counted", encryption.StagePromoted, loaded, nil, `then count what is left`, 0},
		{"promoted, values left", encryption.StagePromoted, loaded, &EtcdCounts{NotUnderWriteKey: 5}, `5 value(s) are still under older keys: "k8scrypto encryption reencrypt --kubeconfig /a.conf --wait"`, 0},
		{"promoted, none left", encryption.StagePromoted, loaded, &EtcdCounts{}, `"k8scrypto encryption rotate prune --yes --kubeconfig /a.conf --etcd-endpoints https://e:2379"`, 0},
		{"steady, plaintext left", encryption.StageSteady, loaded, &EtcdCounts{NotUnderWriteKey: 2}, `2 value(s) are not under the write key`, 0},
		{"unreadable", encryption.StageSteady, loaded, &EtcdCounts{Unreadable: 3, UnreadablePlaintext: 1}, `rotate prepare`, 2},
	} {
		adv := AdviseEncryption(encryption.Status{Stage: tc.stage, Next: encryptionNext(tc.stage)}, tc.api, tc.etcd, args)
		if !strings.Contains(adv.Next, tc.next) || len(adv.Problems) != tc.problems {
			t.Errorf("%s: next %q, problems %q; want next with %q and %d problems", tc.name, adv.Next, adv.Problems, tc.next, tc.problems)
		}
	}
}

// TestPlaintextIsAProblem: an entry whose first provider is identity writes plaintext: a problem (status
// exits 1) naming the resources; identity last, or a KMS plugin first, is fine.
func TestPlaintextIsAProblem(t *testing.T) {
	plain := encryption.Status{Stage: encryption.StageNone, Entries: []encryption.Entry{{Resources: []string{"secrets", "configmaps"}, Providers: []encryption.ProviderInfo{{Type: encryption.Identity}, {Type: encryption.Secretbox}}}}}
	adv := AdviseEncryption(plain, nil, nil, StepArgs{})
	if len(adv.Problems) != 1 || !strings.HasPrefix(adv.Problems[0], "PLAINTEXT: secrets,configmaps are written unencrypted") ||
		!strings.Contains(adv.Problems[0], `"k8scrypto encryption rotate prepare"`) || !strings.Contains(adv.Problems[0], `"k8scrypto encryption rotate promote --kubeconfig ADMIN.CONF --wait"`) {
		t.Errorf("identity first: %q", adv.Problems)
	}
	// The next step of a plaintext file is the repair, not a reencrypt, even with values counted outside the
	// write key (identity's).
	plain.Stage = encryption.StagePlaintext
	if adv := AdviseEncryption(plain, nil, &EtcdCounts{NotUnderWriteKey: 3}, StepArgs{}); !strings.HasPrefix(adv.Next, `"k8scrypto encryption rotate prepare"`) {
		t.Errorf("next for a plaintext file: %q", adv.Next)
	}
	// Prepared already: the message names promote, not prepare again.
	plain.Entries[0].Stage = encryption.StagePrepared
	if adv := AdviseEncryption(plain, nil, nil, StepArgs{}); len(adv.Problems) != 1 || strings.Contains(adv.Problems[0], "rotate prepare") || !strings.Contains(adv.Problems[0], "rotate promote") {
		t.Errorf("identity first, repair prepared: %q", adv.Problems)
	}
	for _, first := range []string{encryption.KMS, encryption.Secretbox} {
		ok := encryption.Status{Stage: encryption.StageSteady, Entries: []encryption.Entry{{Resources: []string{"secrets"}, Providers: []encryption.ProviderInfo{{Type: first}, {Type: encryption.Identity}}}}}
		if adv := AdviseEncryption(ok, nil, nil, StepArgs{}); len(adv.Problems) != 0 {
			t.Errorf("%s first, identity last: %q", first, adv.Problems)
		}
	}
}
