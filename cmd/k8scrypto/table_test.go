package main

import (
	"bytes"
	"fmt"
	"testing"
	"text/tabwriter"
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

// TestTableFlushWritesOnce: a table reaches stdout in one write (a bare tabwriter makes one per cell),
// laid out exactly as the tabwriter lays it out.
func TestTableFlushWritesOnce(t *testing.T) {
	var out countingWriter
	var want bytes.Buffer
	tbl, plain := newTable(&out), tabwriter.NewWriter(&want, 10, 4, 3, ' ', 0)
	for i := range 20 {
		fmt.Fprintf(tbl, "name-%d\tvalue\t%d\n", i, i*i)
		fmt.Fprintf(plain, "name-%d\tvalue\t%d\n", i, i*i)
	}
	if err := tbl.Flush(); err != nil {
		t.Fatal(err)
	}
	plain.Flush()
	if out.writes != 1 {
		t.Errorf("%d writes for one table, want 1", out.writes)
	}
	if out.String() != want.String() {
		t.Errorf("layout differs from the tabwriter's:\n%s\nwant:\n%s", out.String(), want.String())
	}
	// A table flushed twice writes only what came after the first flush.
	fmt.Fprintln(tbl, "last\trow")
	if err := tbl.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.writes != 2 || !bytes.HasSuffix(out.Bytes(), []byte("last      row\n")) || bytes.Count(out.Bytes(), []byte("name-0")) != 1 {
		t.Errorf("second flush: %d writes, output:\n%s", out.writes, out.String())
	}
}
