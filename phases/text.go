package phases

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// Text is a result's text form (-o text): lines and tables in the order they are printed. What each line
// and cell says, and which rows a quiet run leaves out, is decided here, beside the result; the command
// layer only lays the tables out (one table style) and writes them.
type Text []TextBlock

// TextBlock is one line, or, when Header is set, one table: Header and each row are tab-separated cells.
type TextBlock struct {
	Line   string   `json:"line,omitempty"`
	Header string   `json:"header,omitempty"`
	Rows   []string `json:"rows,omitempty"`
}

// TextResult is a result with a text form. quiet is -q: a result whose rows can need no attention (renew)
// leaves those out, and prints nothing when none is left, so that cron mails only then.
type TextResult interface {
	Text(quiet bool) Text
}

// line appends a line.
func (x *Text) line(format string, args ...any) {
	*x = append(*x, TextBlock{Line: fmt.Sprintf(format, args...)})
}

// table appends a table and returns it for its rows.
func (x *Text) table(header string) *TextBlock {
	*x = append(*x, TextBlock{Header: header})
	return &(*x)[len(*x)-1]
}

// row appends a row; call it before the next line or table of the Text it came from.
func (b *TextBlock) row(format string, args ...any) {
	b.Rows = append(b.Rows, fmt.Sprintf(format, args...))
}

// textDate is kubeadm's date format in its tables.
const textDate = "Jan 02, 2006 15:04 MST"

// wouldWrite is the verb of a file list, dry run or not.
func wouldWrite(dryRun bool) string {
	if dryRun {
		return "would write"
	}
	return "wrote"
}

// Text is init's table of files and the count of each action, then the next command.
func (r Result) Text(bool) Text {
	var x Text
	if r.DryRun {
		x.line("Dry run: nothing was written. These files would be:")
	}
	t := x.table("ACTION\tFILE\tSUBJECT\tSANS")
	counts := map[string]int{}
	for _, fr := range r.Files {
		counts[fr.Action]++
		path := fr.Path
		if path == "" {
			path = "(" + fr.Phase + ")"
		}
		detail := strings.Join(fr.SANs, ",")
		if fr.Action == ActionSkipped || detail == "" {
			detail = fr.Reason
		}
		t.row("%s\t%s\t%s\t%s", fr.Action, path, fr.Subject, detail)
	}
	// No directory here: the files span the certificate and kubeconfig directories, and each row names its own.
	x.line("%d created, %d reused, %d skipped", counts[ActionCreated], counts[ActionReused], counts[ActionSkipped])
	x.auditLog(r.DryRun, r.AuditLog)
	if r.NextCommand != "" {
		next := "Next step: "
		if r.DryRun {
			next = "Next step after a real run: "
		}
		x.line("%s%s", next, r.NextCommand)
	}
	return x
}

// Text is renew's table and the count of each action. Quiet, it lists only what was renewed or needs
// attention, and is empty when nothing is.
func (r RenewResult) Text(quiet bool) Text {
	quietRow := func(it RenewItem) bool {
		return quiet && (it.Action == RenewNotDue || it.Action == RenewSkipped || (it.Action == RenewMissing && !it.Required))
	}
	if !slices.ContainsFunc(r.Certificates, func(it RenewItem) bool { return !quietRow(it) }) {
		return nil
	}
	var x Text
	if r.DryRun {
		x.line("Dry run: nothing was written.")
	}
	t := x.table("CERTIFICATE\tACTION\tEXPIRES\tRESIDUAL TIME\tDETAIL")
	counts := map[string]int{}
	for _, it := range r.Certificates {
		counts[it.Action]++
		if quietRow(it) {
			continue
		}
		expires, residual := "", ""
		if !it.NotAfter.IsZero() {
			expires = it.NotAfter.Format(textDate)
			residual = duration.HumanDuration(it.NotAfter.Sub(r.Time))
		}
		t.row("%s\t%s\t%s\t%s\t%s", it.Name, it.Action, expires, residual, it.Reason)
	}
	var parts []string
	for _, a := range []string{RenewRenewed, RenewWouldRenew, RenewNotDue, RenewSkipped, RenewMissing, RenewFailed} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	line := strings.Join(parts, ", ")
	if r.BackupDir != "" {
		line += map[bool]string{true: "; replaced files would be backed up in ", false: "; replaced files backed up in "}[r.DryRun] + r.BackupDir
	}
	x.line("%s", line)
	if len(r.PrunedBackups) > 0 {
		x.line("%s (--keep-backups): %s", map[bool]string{true: "would remove old backups", false: "removed old backups"}[r.DryRun], strings.Join(r.PrunedBackups, ", "))
	}
	if r.OnRenew != "" {
		x.line("%s --on-renew: %s", map[bool]string{true: "would run", false: "runs"}[r.DryRun], r.OnRenew)
	}
	x.auditLog(r.DryRun, r.AuditLog)
	return x
}

// Text is kubeadm's check-expiration tables: the certificates, then the CAs.
func (info ExpirationInfo) Text(bool) Text {
	yesNo := map[bool]string{true: "yes", false: "no"}
	residual := func(r CertificateExpiration) string {
		return duration.HumanDuration(time.Duration(r.ResidualTime) * time.Second)
	}
	var x Text
	t := x.table("CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED")
	for _, r := range info.Certificates {
		switch {
		case r.Missing:
			t.row("!MISSING! %s\t\t\t\t", r.Name)
		case r.Error != "":
			t.row("!UNREADABLE! %s\t\t\t\t", r.Name)
		default:
			t.row("%s%s\t%s\t%s\t%s\t%-8v", invalidMark(r), r.Name, r.ExpirationDate.Format(textDate), residual(r), r.CAName, yesNo[r.ExternallyManaged])
		}
	}
	x.line("")
	t = x.table("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
	for _, r := range info.CertificateAuthorities {
		switch {
		case r.Missing:
			t.row("!MISSING! %s\t\t\t", r.Name)
		case r.Error != "":
			t.row("!UNREADABLE! %s\t\t\t", r.Name)
		default:
			t.row("%s%s\t%s\t%s\t%-8v", invalidMark(r), r.Name, r.ExpirationDate.Format(textDate), residual(r), yesNo[r.ExternallyManaged])
		}
	}
	return x
}

func invalidMark(r CertificateExpiration) string {
	if r.Problem != "" {
		return "!INVALID! "
	}
	return ""
}

// Text is what the bundle holds.
func (r ExportResult) Text(bool) Text {
	var x Text
	x.line("wrote %s (format %d, 0600): %s", r.File, r.Format, strings.Join(r.Entries, ", "))
	return x
}

// Text is the Secret stored and, when k8scrypto made it, the certificate key (printed this once).
func (r UploadResult) Text(bool) Text {
	var x Text
	if r.DryRun {
		x.line("dry run: would store %s (%s) with a bootstrap token expiring %s, and its Role and RoleBinding; nothing was stored", r.Secret, strings.Join(r.Entries, ", "), r.Expires)
		return x
	}
	x.line("stored %s (%s), expires %s", r.Secret, strings.Join(r.Entries, ", "), r.Expires)
	if r.Key != "" {
		x.line("certificate key: %s", r.Key)
	}
	return x
}

// Text lists the files written and kept, where they came from and the next step.
func (r InstallSharedResult) Text(bool) Text {
	var x Text
	for _, p := range r.Written {
		x.line("%s %s", wouldWrite(r.DryRun), p)
	}
	for _, p := range r.Kept {
		x.line("kept %s (identical)", p)
	}
	x.line("from %s", r.Source)
	x.auditLog(r.DryRun, r.AuditLog)
	x.line("next: %s", r.Next)
	return x
}
