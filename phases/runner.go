package phases

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Phase is one step of a workflow. Sub-phases run in order after the phase's own Run.
type Phase struct {
	Name  string
	Short string
	Long  string
	// Phases are the sub-phases, in order.
	Phases []Phase
	// Run does the phase's work; nil for a phase that only groups sub-phases.
	Run func(ctx context.Context, d *Data) error
	// RunIf, when set, decides at run time whether Run runs (and says why not).
	RunIf func(d *Data) (run bool, reason string)
	// KeysNeeded names the keys the phase will create, so they can be generated concurrently up front.
	KeysNeeded func(d *Data) []string
	// Outputs lists the files the phase writes, for reporting a skipped phase.
	Outputs func(d *Data) []string
}

// Runner runs an ordered tree of phases.
type Runner struct {
	Phases []Phase
}

// flatPhase is a phase with its "/"-joined name.
type flatPhase struct {
	name  string
	phase *Phase
}

func (r *Runner) flatten() []flatPhase {
	var out []flatPhase
	var walk func(prefix string, ps []Phase)
	walk = func(prefix string, ps []Phase) {
		for i := range ps {
			name := prefix + ps[i].Name
			out = append(out, flatPhase{name: name, phase: &ps[i]})
			walk(name+"/", ps[i].Phases)
		}
	}
	walk("", r.Phases)
	return out
}

// Names lists every phase name, "/"-joined, in run order.
func (r *Runner) Names() []string {
	var names []string
	for _, p := range r.flatten() {
		names = append(names, p.name)
	}
	return names
}

// Selection says which phases run: Only (empty: all) and its descendants, minus Skip and their descendants.
type Selection struct {
	Only []string
	Skip []string
}

// Selected returns the phases that the selection enables, in run order; unknown names are an error that
// lists the valid ones.
func (r *Runner) selected(sel Selection) ([]flatPhase, error) {
	all := r.flatten()
	known := r.Names()
	for _, n := range append(slices.Clone(sel.Only), sel.Skip...) {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("unknown phase %q; valid phases are: %s", n, strings.Join(known, ", "))
		}
	}
	under := func(name, root string) bool { return name == root || strings.HasPrefix(name, root+"/") }
	var out []flatPhase
	for _, p := range all {
		on := len(sel.Only) == 0 || slices.ContainsFunc(sel.Only, func(o string) bool { return under(p.name, o) })
		if on && slices.ContainsFunc(sel.Skip, func(s string) bool { return under(p.name, s) }) {
			on = false
		}
		if on {
			out = append(out, p)
		}
	}
	return out, nil
}

// Validate checks the phase names of a selection, so that a command can refuse a bad --skip-phases before
// it takes a lock or touches a file.
func (r *Runner) Validate(sel Selection) error {
	_, err := r.selected(sel)
	return err
}

// Run runs the selected phases against d, then commits what they staged (unless d is a dry run).
func (r *Runner) Run(ctx context.Context, d *Data, sel Selection) error {
	phases, err := r.selected(sel)
	if err != nil {
		return err
	}
	for _, p := range r.flatten() {
		skipped := slices.ContainsFunc(sel.Skip, func(s string) bool { return p.name == s || strings.HasPrefix(p.name, s+"/") })
		if skipped && p.phase.Run != nil {
			d.skip(p.name, p.phase, "skipped by --skip-phases")
		}
	}
	// Start every key the run will create before the first phase needs one.
	if !d.DryRun {
		for _, p := range phases {
			if p.phase.KeysNeeded != nil {
				d.Keys.Prefetch(p.phase.KeysNeeded(d)...)
			}
		}
	}
	for _, p := range phases {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.phase.Run == nil {
			continue
		}
		if p.phase.RunIf != nil {
			if run, reason := p.phase.RunIf(d); !run {
				d.Log.Info("skipping phase", "phase", p.name, "reason", reason)
				d.skip(p.name, p.phase, reason)
				continue
			}
		}
		d.Log.Debug("running phase", "phase", p.name)
		d.phase = p.name
		if err := p.phase.Run(ctx, d); err != nil {
			return fmt.Errorf("phase %s: %w", p.name, err)
		}
	}
	d.logPhaseTotals()
	if d.DryRun {
		return nil
	}
	return d.commit()
}

// logPhaseTotals is the default progress: one line per top-level phase that writes files, with their count
// (the files themselves are in the result, and on stderr with -v).
func (d *Data) logPhaseTotals() {
	var order []string
	count := map[string]int{}
	for _, r := range d.results {
		if r.Action != ActionCreated {
			continue
		}
		top, _, _ := strings.Cut(r.Phase, "/")
		if _, ok := count[top]; !ok {
			order = append(order, top)
		}
		count[top]++
	}
	verb := map[bool]string{true: "would write", false: "writing"}[d.DryRun]
	for _, top := range order {
		d.Log.Info(verb, "phase", top, "files", count[top])
	}
}
