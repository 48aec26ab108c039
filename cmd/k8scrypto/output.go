package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/phases"
)

// print is the one writer of results: the versioned object as JSON or YAML, or its text form, with the
// one table style.
func (g *globals) print(w io.Writer, res phases.TextResult) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case "yaml":
		data, err := yaml.Marshal(res)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case "text":
		return writeText(w, res.Text(g.quiet))
	}
	return fmt.Errorf("unknown output format %q", g.output)
}

// show returns the command's error, or prints its result.
func (g *globals) show(w io.Writer, res phases.TextResult, err error) error {
	if err != nil {
		return err
	}
	return g.print(w, res)
}

// report prints a result that may come with the command's error (a report that found problems, a run that
// failed part-way) and returns that error; without a result there is only the error.
func report[T any, R interface {
	*T
	phases.TextResult
}](g *globals, w io.Writer, res R, err error) error {
	if res == nil {
		return err
	}
	if perr := g.print(w, res); perr != nil {
		return perr
	}
	return err
}

// writeText writes a result's lines and tables. A table is written whole at its end: a tabwriter alone
// writes every cell and padding run separately, hundreds of write system calls for a PKI listing.
func writeText(w io.Writer, x phases.Text) error {
	var buf bytes.Buffer
	for _, b := range x {
		if b.Header == "" {
			fmt.Fprintln(&buf, b.Line)
			continue
		}
		t := tabwriter.NewWriter(&buf, 10, 4, 3, ' ', 0)
		fmt.Fprintln(t, b.Header)
		for _, r := range b.Rows {
			fmt.Fprintln(t, r)
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}
