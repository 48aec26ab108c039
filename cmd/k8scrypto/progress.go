package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"k8scrypto.dev/k8scrypto/phases/reencrypt"
)

// progressBar draws one line on a terminal, redrawn in place.
type progressBar struct {
	w     io.Writer
	width int
}

// newProgressBar returns nil unless w is a terminal (and not -q): piped or logged stderr gets no bar.
func newProgressBar(w io.Writer, quiet bool) *progressBar {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width < 40 {
		width = 80
	}
	return &progressBar{w: w, width: width}
}

func (b *progressBar) draw(p reencrypt.Progress) {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Done) / s
	}
	text := fmt.Sprintf(" %d", p.Done)
	frac := -1.0
	if p.Total > 0 {
		text += fmt.Sprintf("/%d", p.Total)
		frac = min(float64(p.Done)/float64(p.Total), 1)
	}
	text += fmt.Sprintf(" %s %.0f/s", p.Resource, rate)
	if p.Errors > 0 {
		text += fmt.Sprintf(" %d errors", p.Errors)
	}
	barWidth := b.width - len(text) - 4
	bar := ""
	if barWidth > 10 && frac >= 0 {
		filled := int(frac * float64(barWidth))
		bar = "[" + strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled) + "]"
	}
	fmt.Fprintf(b.w, "\r%s%s\x1b[K", bar, text)
}

func (b *progressBar) finish() { fmt.Fprint(b.w, "\n") }
