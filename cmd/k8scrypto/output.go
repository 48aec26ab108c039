package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// printStructured writes a versioned result object as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}

// newTable is the one table style of text output.
func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 10, 4, 3, ' ', 0)
	return t
}

// table is a tabwriter whose Flush writes the whole table at once: a tabwriter alone writes every cell and
// padding run separately, hundreds of write system calls for a PKI listing.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	w   io.Writer
}

func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	_, err := t.w.Write(t.buf.Bytes())
	t.buf.Reset()
	return err
}
