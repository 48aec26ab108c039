package main

import (
	"bytes"
	"fmt"
	"testing"
	"text/tabwriter"

	"k8scrypto.dev/k8scrypto/phases"
)

// countingWriter counts Write calls: each is a system call when the writer is os.Stdout.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

// TestTextWritesOnce: a result's text reaches stdout in one write (a bare tabwriter makes one per cell),
// its tables laid out exactly as the tabwriter lays them out, its lines between them as they are.
func TestTextWritesOnce(t *testing.T) {
	var out countingWriter
	var want bytes.Buffer
	x := phases.Text{{Line: "before"}, {Header: "NAME\tVALUE\tSQUARE"}, {Line: ""}, {Header: "LAST\tTABLE", Rows: []string{"a\tb"}}}
	plain := tabwriter.NewWriter(&want, 10, 4, 3, ' ', 0)
	fmt.Fprintln(&want, "before")
	fmt.Fprintln(plain, "NAME\tVALUE\tSQUARE")
	for i := range 20 {
		x[1].Rows = append(x[1].Rows, fmt.Sprintf("name-%d\tvalue\t%d", i, i*i))
		fmt.Fprintf(plain, "name-%d\tvalue\t%d\n", i, i*i)
	}
	plain.Flush()
	fmt.Fprintln(&want)
	plain = tabwriter.NewWriter(&want, 10, 4, 3, ' ', 0)
	fmt.Fprintln(plain, "LAST\tTABLE\na\tb")
	plain.Flush()
	if err := writeText(&out, x); err != nil {
		t.Fatal(err)
	}
	if out.writes != 1 {
		t.Errorf("%d writes for one result, want 1", out.writes)
	}
	if out.String() != want.String() {
		t.Errorf("layout differs from the tabwriter's:\n%s\nwant:\n%s", out.String(), want.String())
	}
}
