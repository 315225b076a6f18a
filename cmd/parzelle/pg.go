package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/parzelle/parzelle/pgcluster"
)

func cmdPG(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "temp":
			return pgTemp(args[1:])
		case "status", "stop":
			return pgEmbedded(args[0], args[1:])
		}
	}
	return errors.New("usage: parzelle pg temp -- CMD [ARG]... | parzelle pg status|stop [--config FILE]")
}

// pgTemp runs a command with PARZELLE_TEST_DATABASE_URL pointing at a
// PostgreSQL superuser: on a throwaway cluster it starts in a temporary
// directory and removes afterwards, or, when DATABASE_URL or
// PARZELLE_TEST_DATABASE_URL is set already, on that server.
func pgTemp(args []string) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return errors.New("usage: parzelle pg temp -- CMD [ARG]...")
	}
	env := os.Environ()
	if os.Getenv(pgcluster.TestURLEnv) == "" {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			env = append(env, pgcluster.TestURLEnv+"="+u)
		} else {
			u, cleanup, err := throwawayCluster()
			if err != nil {
				return err
			}
			defer cleanup()
			env = append(env, pgcluster.TestURLEnv+"="+u)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdin, os.Stdout, os.Stderr, env
	// A signal goes on to the command; we wait for it to end and then clean
	// up instead of dying first and leaving the cluster running.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exitError{exit.ExitCode()}
	}
	return err
}

func throwawayCluster() (string, func(), error) {
	dir, err := os.MkdirTemp("", "parzelle-pg-")
	if err != nil {
		return "", nil, err
	}
	// The cluster may run as the postgres user, which must enter dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", nil, err
	}
	remove := func() { os.RemoveAll(dir) }
	c, err := pgcluster.New(dir)
	if err != nil {
		remove()
		return "", nil, err
	}
	c.Throwaway, c.MaxConnections = true, 300
	ctx := context.Background()
	start := time.Now()
	if err := c.Init(ctx); err != nil {
		remove()
		return "", nil, err
	}
	if _, err := c.Start(ctx); err != nil {
		remove()
		return "", nil, err
	}
	cleanup := func() {
		if err := c.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "parzelle pg temp:", err)
		}
		remove()
	}
	u, err := c.SuperuserURL("postgres")
	if err != nil {
		cleanup()
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "parzelle pg temp: throwaway PostgreSQL cluster in %s ready after %.1fs\n", dir, time.Since(start).Seconds())
	return u, cleanup, nil
}

// pgEmbedded reports on or stops the embedded cluster of a node
// configuration, e.g. after the node was killed without stopping it.
func pgEmbedded(verb string, args []string) error {
	cfg, err := parseConfig("pg "+verb, args, nil)
	if err != nil {
		return err
	}
	if cfg.Database.URL != "" {
		return errors.New("the node uses DATABASE_URL / database.url, not an embedded cluster")
	}
	c, err := pgcluster.New(cfg.Database.Embedded)
	if err != nil {
		return err
	}
	ctx := context.Background()
	running := c.Initialized() && c.Running(ctx)
	if verb == "stop" {
		if !running {
			fmt.Println("embedded cluster in", c.Dir, "is not running")
			return nil
		}
		if err := c.Stop(ctx); err != nil {
			return err
		}
		fmt.Println("embedded cluster in", c.Dir, "stopped")
		return nil
	}
	switch {
	case !c.Initialized():
		fmt.Println("no embedded cluster in", c.Dir, "yet")
	case running:
		port, _ := c.Port()
		fmt.Printf("embedded cluster in %s is running on 127.0.0.1:%d\n", c.Dir, port)
	default:
		fmt.Println("embedded cluster in", c.Dir, "exists and is stopped")
		return exitError{3}
	}
	return nil
}
