package suggest

import (
	"slices"
	"testing"
)

func TestNearest(t *testing.T) {
	flags := []string{"backup-dir", "dry-run", "cert-dir", "kubeconfig-dir", "audit-log"}
	for word, want := range map[string][]string{
		"backup_dir": {"backup-dir"}, "BACKUP-DIRS": {"backup-dir"}, "dryrun": {"dry-run"}, "dry_run": {"dry-run"},
		"cert-dri": {"cert-dir"}, "zzzzzz": nil, "audit": {"audit-log"},
	} {
		if got := Nearest(word, flags); !slices.Equal(got, want) {
			t.Errorf("Nearest(%q) = %v, want %v", word, got, want)
		}
	}
	if Distance("kitten", "sitting") != 3 || Distance("", "abc") != 3 || Distance("same", "same") != 0 {
		t.Error("Distance")
	}
}
