package main

import (
	"context"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/reencrypt"
)

type reencryptFlags struct {
	clusterFlags
	apiserver  apiserverFlags
	etcd       etcdFlags
	resources  []string
	workers    int
	pageSize   int64
	checkpoint string
	restart    bool
}

func newReencryptCommand(e *env, g *globals) *cobra.Command {
	f := &reencryptFlags{}
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Rewrite every Secret (and every other configured resource) so it is stored under the current key",
		Long: `Rewrite every object of the resources the encryption config names (secrets by default) through the API,
with an unchanged PUT, so that the apiserver stores it again with its current write key: the step between
"rotate promote" and "rotate prune", and after turning encryption on. Objects already under the write key are
not written again by the apiserver, so a repeated run is cheap.

It first asks the apiserver (its /metrics) which encryption config it runs, and refuses (exit 3) unless it
is the file on disk: an apiserver that has not reloaded the promoted file would store everything under the old
key again. --wait waits for the reload instead. If the apiserver loads another file during the run, the run
fails and its checkpoint is discarded.

"rewritten" counts objects the apiserver stored again (a new resourceVersion); "unchanged" those it found
already under its write key. With --etcd-endpoints the run ends by counting what etcd stores, and fails if
anything is left under an older key.

Objects are listed in pages (--page-size) and updated by --workers concurrent requests; a conflict is retried
with a fresh read, an object deleted meanwhile is skipped. Progress is saved in --checkpoint: an interrupted or
failed run resumes after the last object up to which everything was rewritten, once a sample of the objects
it skips is confirmed under the write key. A progress bar is drawn on stderr when it is a terminal; a summary
is printed at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReencrypt(cmd.Context(), e, g, f) },
	}
	fl := cmd.Flags()
	f.addSource(fl)
	f.addSession(fl)
	f.apiserver.add(fl, "required: the cluster whose objects are rewritten; its apiserver must run the file on disk")
	f.apiserver.addWait(fl)
	f.apiserver.addEndpoints(fl)
	f.etcd.add(fl)
	fl.StringSliceVar(&f.resources, "resources", nil, "resources to rewrite, as the encryption config names them (default: those of <cert-dir>/"+phases.EncryptionFileName+")")
	fl.IntVar(&f.workers, "workers", reencrypt.DefaultWorkers, "concurrent updates")
	fl.Int64Var(&f.pageSize, "page-size", reencrypt.DefaultPageSize, "objects per list request")
	fl.StringVar(&f.checkpoint, "checkpoint", "", "progress file for resuming (default <state dir>/"+reencrypt.CheckpointFile+": /var/lib/k8scrypto, or the per-user state directory without root)")
	fl.BoolVar(&f.restart, "restart", false, "ignore an existing checkpoint and rewrite everything")
	return cmd
}

func runReencrypt(ctx context.Context, e *env, g *globals, f *reencryptFlags) error {
	api, err := f.apiserver.apiServer()
	if err != nil {
		return err
	}
	o := phases.ReencryptOptions{
		ReadOptions: f.read(e, g),
		ReencryptRequest: phases.ReencryptRequest{
			API: api, Resources: f.resources, Workers: f.workers, PageSize: f.pageSize,
			Checkpoint: f.checkpoint, Restart: f.restart, Etcd: f.etcd.etcd(), Log: g.log,
		},
	}
	bar := newProgressBar(e.stderr, g.quiet)
	if bar != nil {
		o.Progress = bar.draw
	}
	res, err := phases.RunReencrypt(ctx, o)
	if bar != nil {
		bar.finish()
	}
	return report(g, e.stdout, res, err)
}
