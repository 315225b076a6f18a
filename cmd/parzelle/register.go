package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
)

const registerUsage = "usage: parzelle register rotate --tenant ID [--kek] [--wait] [--config FILE] | rotations --tenant ID [--config FILE]"

func cmdRegister(args []string) error {
	if len(args) == 0 {
		return errors.New(registerUsage)
	}
	var tenantID string
	var kek, wait bool
	cfg, err := parseConfig("register "+args[0], args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&tenantID, "tenant", "", "tenant id")
		if args[0] == "rotate" {
			fs.BoolVar(&kek, "kek", false, "also rotate the tenant's key-encryption key and wrap every register key again")
			fs.BoolVar(&wait, "wait", false, "wait until the running node has re-encrypted the data, showing progress")
		}
	})
	if err != nil {
		return err
	}
	if tenantID == "" {
		return errors.New("--tenant is required\n" + registerUsage)
	}
	log := newLogger(cfg.Log)
	ctx := context.Background()
	pool, closeDB, err := connect(ctx, cfg, log, 2)
	if err != nil {
		return err
	}
	defer closeDB()
	services, err := openServices(ctx, cfg, pool, log)
	if err != nil {
		return err
	}
	store := services.Store
	switch args[0] {
	case "rotate":
		rot, err := store.RotateKey(ctx, services.Jobs, tenantID, kek)
		if err != nil {
			return err
		}
		fmt.Printf("tenant %s: data key %d is current; %d rows under older keys are re-encrypted by the running node's job\n", tenantID, rot.KeyVersion, rot.Total)
		if wait {
			return waitRotation(ctx, store, tenantID, rot.KeyVersion, os.Stdout)
		}
		return nil
	case "rotations":
		rs, err := store.Rotations(ctx, tenantID)
		if err != nil {
			return err
		}
		printRotations(os.Stdout, rs)
		return nil
	}
	return errors.New(registerUsage)
}

// openServices assembles the node's services the way serve does, for
// operator commands: tenant files read (not recorded), keys from the key
// directory, no schemas, nothing started (the running node's workers do
// the work the commands enqueue).
func openServices(ctx context.Context, cfg *config.Node, pool *pgxpool.Pool, log *slog.Logger) (*node.Services, error) {
	reg := prometheus.NewRegistry()
	tenants := tenant.NewRegistry(cfg.Paths.Tenants, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if _, err := tenants.Reload(ctx); err != nil {
		return nil, err
	}
	schemas, err := xmlschema.Load(nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return node.Assemble(node.New(cfg, pool, tenants, reg, log), reg, node.WithSchemas(schemas), node.WithLogger(log))
}

func printRotations(w io.Writer, rs []register.Rotation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTARTED\tROWS\tDONE\tFINISHED")
	for _, r := range rs {
		finished := "running"
		if r.FinishedAt != nil {
			finished = r.FinishedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", r.KeyVersion, r.StartedAt.Local().Format(time.DateTime), r.Total, r.Done, finished)
	}
	tw.Flush()
}

// waitRotation shows a rotation's progress until it is finished.
func waitRotation(ctx context.Context, store *register.Store, tenantID string, version int, w io.Writer) error {
	last := int64(-1)
	for {
		rs, err := store.Rotations(ctx, tenantID)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.KeyVersion != version {
				continue
			}
			if r.Done != last {
				fmt.Fprintf(w, "re-encrypted %d of %d rows\n", r.Done, r.Total)
				last = r.Done
			}
			if r.FinishedAt != nil {
				fmt.Fprintln(w, "done; older data keys retired")
				return nil
			}
		}
		time.Sleep(time.Second)
	}
}
