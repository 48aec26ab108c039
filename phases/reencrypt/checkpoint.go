package reencrypt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// CheckpointFile is the checkpoint's name in k8scrypto's state directory.
const CheckpointFile = "reencrypt-checkpoint.json"

// Checkpoint is the progress of an interrupted run.
type Checkpoint struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Server     string `json:"server"`
	// Target is the write key the objects are rewritten under (encryption.WriteKey), and ConfigHash the
	// encryption config the apiserver was verified to run when they were: what the apiserver used, not
	// what a file on disk intended.
	Target     string `json:"target"`
	ConfigHash string `json:"configHash"`
	// Updated is when the checkpoint was last written; an old one is not trusted (see Options.MaxAge).
	Updated   time.Time                `json:"updated"`
	Resources map[string]ResourceState `json:"resources"`
}

// ResourceState is how far a resource got: every object at or before After (namespace/name, in etcd key
// order) is rewritten, or all of them when Done.
type ResourceState struct {
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

func newCheckpoint(server, target, configHash string) *Checkpoint {
	return &Checkpoint{APIVersion: "k8scrypto.dev/v1alpha1", Kind: "ReencryptCheckpoint", Server: server, Target: target, ConfigHash: configHash, Resources: map[string]ResourceState{}}
}

// mismatch says why c cannot be resumed by a run with options o ("" when it can).
func (c *Checkpoint) mismatch(o Options) string {
	switch {
	case c.Server != o.Server:
		return fmt.Sprintf("it was recorded for server %s", c.Server)
	case c.ConfigHash == "":
		return "it does not say which encryption config the apiserver ran (written by an older k8scrypto)"
	case c.ConfigHash != o.ConfigHash || c.Target != o.Target:
		return fmt.Sprintf("it was recorded while the apiserver ran another encryption config (%s, write key %s)", c.ConfigHash, c.Target)
	case o.Now().Sub(c.Updated) > o.MaxAge:
		return fmt.Sprintf("it is older than %s (last written %s)", o.MaxAge, c.Updated.Format(time.RFC3339))
	}
	return ""
}

func (c *Checkpoint) marshal() []byte {
	data, _ := json.MarshalIndent(c, "", "  ")
	return append(data, '\n')
}

// loadCheckpoint reads a checkpoint; nil when there is none.
func loadCheckpoint(path string) (*Checkpoint, error) {
	data, err := pki.ReadFile(path, pki.MaxConfigSize) // regular files only: a FIFO would hang the command
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil || c.Kind != "ReencryptCheckpoint" {
		return nil, fmt.Errorf("%s is not a reencrypt checkpoint (remove it, or pass --restart)", path)
	}
	if c.Resources == nil {
		c.Resources = map[string]ResourceState{}
	}
	return &c, nil
}

func writeCheckpoint(path string, data []byte) error {
	if err := pki.EnsureDir(filepath.Dir(path), pki.ModeStrictDir, false); err != nil {
		return fmt.Errorf("checkpoint directory: %w", err)
	}
	return pki.WriteFileAtomic(path, data, pki.ModeKey)
}

func removeCheckpoint(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing checkpoint: %w", err)
	}
	return nil
}
