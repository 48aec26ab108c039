package phases

import (
	"slices"
	"strings"
	"time"
)

// The text forms of the rotations' and the status commands' results (see Text).

// Text is the key pair's stage, what the apiserver serves, and a table of every key.
func (r SAStatusResult) Text(bool) Text {
	st := r.State
	var x Text
	x.line("Directory: %s", st.Dir)
	x.line("Stage:     %s", st.Stage)
	x.line("Next:      %s", st.Next)
	if a := r.APIServer; a != nil {
		line := "Apiserver: " + a.Server + " serves key IDs " + strings.Join(a.KeyIDs, ", ")
		if len(a.Missing) > 0 {
			line += "; not " + strings.Join(a.Missing, ", ") + " from sa.pub (restart it to load sa.pub)"
		}
		if len(a.Extra) > 0 {
			line += "; " + strings.Join(a.Extra, ", ") + " not in sa.pub"
		}
		x.line("%s", line)
	}
	x.line("")
	t := x.table("FILE\tROLE\tALGORITHM\tKEY ID\tSHA256")
	t.row("%s\t%s\t%s\t%s\t%s", SAKeyFile, st.Key.Role, st.Key.Algorithm, st.Key.KeyID, st.Key.SHA256)
	if st.New != nil {
		t.row("%s\t%s\t%s\t%s\t%s", SANextFile, st.New.Role, st.New.Algorithm, st.New.KeyID, st.New.SHA256)
	}
	for _, k := range st.Pub {
		t.row("%s\t%s\t%s\t%s\t%s", SAPubFile, k.Role, k.Algorithm, k.KeyID, k.SHA256)
	}
	return x
}

// Text says what the step did to which key, the stage reached and the next step.
func (r SARotateResult) Text(bool) Text {
	var x Text
	switch {
	case r.DryRun:
		x.line("dry run: %s can run; nothing was changed", r.Step)
		for _, p := range r.Files {
			x.line("would write %s", p)
		}
		for _, p := range r.Removes {
			x.line("would remove %s", p)
		}
	case r.Added != nil:
		x.line("staged a new %s key (sha256 %s) as %s and appended its public key to %s", r.Added.Algorithm, r.Added.SHA256, SANextFile, SAPubFile)
	case r.Step == "promote":
		x.line("%s is now the signing key %s (sha256 %s)", SANextFile, SAKeyFile, r.State.Key.SHA256)
	case r.Step == "prune":
		for _, k := range r.Removed {
			x.line("removed public key sha256 %s from %s", k.SHA256, SAPubFile)
		}
	}
	x.backups(r.DryRun, r.Backups)
	x.auditLog(r.DryRun, r.AuditLog)
	x.line("stage: %s", r.State.Stage)
	x.line("next: copy the files to every control-plane node; then %s", r.State.Next)
	return x
}

// backups names the copies taken (or, dry, that would be), when there are any.
func (x *Text) backups(dry bool, copies []string) {
	if len(copies) > 0 {
		x.line("%s %s", map[bool]string{true: "would back up to", false: "backed up to"}[dry], strings.Join(copies, ", "))
	}
}

// auditLog says, in a dry run, which audit log the run would append its lines to (a real run's result
// carries it in JSON and YAML only: it is the same file every time).
func (x *Text) auditLog(dry bool, path string) {
	if dry && path != "" {
		x.line("would append its audit lines to %s", path)
	}
}

// Text is the problems first, the file's stage, what the apiserver runs, a table of every provider's keys
// and, with etcd, what etcd stores under which key.
func (r EncryptionStatusResult) Text(bool) Text {
	var x Text
	for _, p := range r.Problems {
		x.line("PROBLEM: %s", p)
	}
	x.line("File:  %s", r.File)
	x.line("Stage: %s", r.Stage)
	x.line("Next:  %s", r.Next)
	switch {
	case r.APIServer != nil && len(r.APIServer.Endpoints) > 0:
		x.line("Apiservers (endpoints of the kubernetes Service):")
		for _, ep := range r.APIServer.Endpoints {
			via := ""
			if ep.Dialed != "" {
				via = " via " + ep.Dialed
			}
			runs := "runs this file"
			if !ep.RunsThisFile {
				runs = "runs ANOTHER file"
			}
			x.line("  %s%s: %s (%s)", ep.Endpoint, via, runs, ep.ConfigHash)
		}
	case r.APIServer != nil:
		x.line("Apiserver: %s", r.APIServer.Describe())
	}
	x.line("")
	t := x.table("RESOURCES\tPROVIDER\tKEY\tFINGERPRINT\tROLE")
	for _, e := range r.Entries {
		res := strings.Join(e.Resources, ",")
		for i, p := range e.Providers {
			role := "read"
			if i == 0 {
				role = "write"
			}
			switch {
			case len(p.Keys) > 0:
				for _, k := range p.Keys {
					t.row("%s\t%s\t%s\t%s\t%s", res, p.Type, k.Name, k.Fingerprint, k.Role)
				}
			case p.Type == ProviderKMS:
				t.row("%s\t%s\t%s\t%s\t%s", res, p.Type, p.Name, p.Endpoint, role)
			default:
				if p.Type == ProviderIdentity && i > 0 {
					role = "read (plaintext)"
				}
				t.row("%s\t%s\t-\t-\t%s", res, p.Type, role)
			}
		}
	}
	if r.Etcd == nil {
		return x
	}
	x.line("")
	t = x.table("RESOURCE\tETCD PREFIX\tSTORED AS\tCOUNT")
	for _, c := range r.Etcd.Counts {
		labels := make([]string, 0, len(c.ByLabel))
		for l := range c.ByLabel {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		if len(labels) == 0 {
			t.row("%s\t%s\t-\t0", c.Resource, c.Prefix)
		}
		for _, l := range labels {
			t.row("%s\t%s\t%s\t%d", c.Resource, c.Prefix, l, c.ByLabel[l])
		}
	}
	x.line("%d value(s) unreadable with this file (%d of them plaintext without an identity provider), %d readable but not under the write key", r.Etcd.Unreadable, r.Etcd.UnreadablePlaintext, r.Etcd.NotUnderWriteKey)
	return x
}

// Text says which key the step moved in which entry, where the file went, the stage and the next step.
func (r EncryptionRotateResult) Text(bool) Text {
	var x Text
	verb := map[string]string{"prepare": "added second", "promote": "moved first", "prune": "removed"}[r.Step]
	for _, c := range r.Changes {
		x.line("%s %s key %s (fingerprint %s) in resources[%d]", verb, c.Provider, c.Key.Name, c.Key.Fingerprint, c.Entry)
	}
	switch {
	case r.DryRun:
		x.line("dry run: %s was not changed; the step would write it", r.File)
		x.backups(true, r.Backups)
		x.auditLog(true, r.AuditLog)
	case len(r.Backups) > 0:
		x.line("wrote %s (previous file backed up to %s)", r.File, strings.Join(r.Backups, ", "))
	default:
		x.line("wrote %s", r.File)
	}
	x.line("stage: %s", r.Stage)
	x.line("next: copy the file to every control-plane node; then %s", r.Next)
	return x
}

// Text is a table of what each resource's objects became, the error samples and the totals.
func (r ReencryptResult) Text(bool) Text {
	var x Text
	t := x.table("RESOURCE\tLISTED\tREWRITTEN\tUNCHANGED\tSKIPPED\tGONE\tCONFLICTS\tERRORS")
	for _, rs := range r.Resources {
		t.row("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d", rs.Resource, rs.Listed, rs.Rewritten, rs.Unchanged, rs.Skipped, rs.Gone, rs.Conflicts, rs.Errors)
	}
	for _, s := range r.ErrorSamples {
		x.line("error: %s", s)
	}
	if r.CheckpointDiscarded != "" {
		x.line("checkpoint discarded: %s", r.CheckpointDiscarded)
	}
	x.line("%d object(s) rewritten under %s, %d unchanged (already under it), %d skipped (checkpoint), %d errors in %s (%.0f objects/s)",
		r.Rewritten, r.Target, r.Unchanged, r.Skipped, r.Errors, r.Duration.Round(time.Millisecond), r.PerSecond)
	if r.Etcd != nil {
		x.line("etcd: %d value(s) left under older keys, %d unreadable", r.Etcd.NotUnderWriteKey, r.Etcd.Unreadable)
	}
	return x
}

// Text names each CA renewed and the kubeconfigs that embed it, the backups and the next step.
func (r CARenewResult) Text(bool) Text {
	var x Text
	verb, update := "renewed", "updated"
	if r.DryRun {
		verb, update = "would renew", "would update"
	}
	for _, c := range r.CAs {
		x.line("%s %s (%s): serial %s, valid until %s, same key and SubjectKeyId %s", verb, c.Name, c.Path, c.Serial, c.NotAfter.Format("2006-01-02"), c.SubjectKeyID)
		for _, p := range c.Embedding {
			x.line("  %s %s (it carries the CA certificate)", update, p)
		}
	}
	x.backups(r.DryRun, r.Backups)
	x.auditLog(r.DryRun, r.AuditLog)
	x.line("next: %s", r.Next)
	return x
}

// Text lists the files the step wrote, the backups, the stage, what to restart and the next step.
func (r CARotateResult) Text(bool) Text {
	var x Text
	for _, p := range r.Files {
		x.line("%s %s", wouldWrite(r.DryRun), p)
	}
	for _, p := range r.Removes {
		x.line("%s %s", map[bool]string{true: "would remove", false: "removed"}[r.DryRun], p)
	}
	x.backups(r.DryRun, r.Backups)
	x.auditLog(r.DryRun, r.AuditLog)
	if r.Adopted {
		x.line("adopted: this node was prepared already (the staged key matches the new CA certificate in the bundle); no new key made")
	}
	if r.Unchanged {
		x.line("unchanged: every file is at stage %s already; nothing %s", r.Stage, map[bool]string{true: "would be written", false: "written"}[r.DryRun])
	}
	x.line("stage: %s", r.Stage)
	x.line("restart: %s", r.Restart)
	x.line("next: %s", r.Next)
	return x
}
