package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

type encStatusFlags struct {
	clusterFlags
	etcd      etcdFlags
	apiserver apiserverFlags
}

func newEncryptionStatusCommand(e *env, g *globals) *cobra.Command {
	f := &encStatusFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the providers, keys (by fingerprint), rotation stage, what the apiserver runs and what etcd stores, and the next safe step",
		Long: `Print the encryption config's providers, its key names in order with a short fingerprint of each (the first
16 hex digits of the SHA-256 of the key; never the key), the rotation stage and the next step that is safe.

With --kubeconfig it asks that kube-apiserver (its /metrics) which version of the file it runs; when the
kubernetes Service (its EndpointSlices in default) lists more than one apiserver, it asks each of them at
that address (--apiserver-endpoint maps an address this machine cannot dial to one it can), with the
kubeconfig's credentials, verifying each certificate for the listed address. With
--etcd-endpoints it also reads every stored value of the configured resources straight from etcd (at one
revision, page by page; only each value's prefix is looked at) and counts them by the key that encrypted them
(k8s:enc:<provider>:v1:<key>:) and as plaintext. The "Next:" line follows from what was measured.

Exit status 1 when something needs the operator: values no apiserver using this file can read, an apiserver
whose latest reload failed, one that runs another version of the file (wait for the reload), or apiservers
that run different files (copy the same file to every control-plane node).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := f.apiserver.apiServer()
			if err != nil {
				return err
			}
			res, err := phases.EncryptionStatus(cmd.Context(), f.read(e, g), api, f.etcd.etcd())
			if res == nil {
				return err
			}
			var perr error
			if g.output != "text" {
				perr = printStructured(e.stdout, g.output, res)
			} else {
				perr = printEncryptionStatus(e.stdout, *res)
			}
			if perr != nil {
				return perr
			}
			return err
		},
	}
	f.add(cmd.Flags())
	f.etcd.add(cmd.Flags())
	f.apiserver.add(cmd.Flags(), "also report whether that kube-apiserver, and every apiserver of the kubernetes Service, runs this file (from their /metrics)")
	f.apiserver.addEndpoints(cmd.Flags())
	return cmd
}

func printEncryptionStatus(w io.Writer, r phases.EncryptionStatusResult) error {
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	fmt.Fprintf(w, "File:  %s\nStage: %s\nNext:  %s\n", r.File, r.Stage, r.Next)
	switch {
	case r.APIServer != nil && len(r.APIServer.Endpoints) > 0:
		fmt.Fprintln(w, "Apiservers (endpoints of the kubernetes Service):")
		for _, ep := range r.APIServer.Endpoints {
			via := ""
			if ep.Dialed != "" {
				via = " via " + ep.Dialed
			}
			runs := "runs this file"
			if !ep.RunsThisFile {
				runs = "runs ANOTHER file"
			}
			fmt.Fprintf(w, "  %s%s: %s (%s)\n", ep.Endpoint, via, runs, ep.ConfigHash)
		}
	case r.APIServer != nil:
		fmt.Fprintf(w, "Apiserver: %s\n", r.APIServer.Describe())
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "RESOURCES\tPROVIDER\tKEY\tFINGERPRINT\tROLE")
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
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", res, p.Type, k.Name, k.Fingerprint, k.Role)
				}
			case p.Type == phases.ProviderKMS:
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", res, p.Type, p.Name, p.Endpoint, role)
			default:
				if p.Type == phases.ProviderIdentity && i > 0 {
					role = "read (plaintext)"
				}
				fmt.Fprintf(t, "%s\t%s\t-\t-\t%s\n", res, p.Type, role)
			}
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if r.Etcd == nil {
		return nil
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "RESOURCE\tETCD PREFIX\tSTORED AS\tCOUNT")
	for _, c := range r.Etcd.Counts {
		labels := make([]string, 0, len(c.ByLabel))
		for l := range c.ByLabel {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		if len(labels) == 0 {
			fmt.Fprintf(t, "%s\t%s\t-\t0\n", c.Resource, c.Prefix)
		}
		for _, l := range labels {
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\n", c.Resource, c.Prefix, l, c.ByLabel[l])
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d value(s) unreadable with this file (%d of them plaintext without an identity provider), %d readable but not under the write key\n", r.Etcd.Unreadable, r.Etcd.UnreadablePlaintext, r.Etcd.NotUnderWriteKey)
	return err
}
