// Command runledger is the run ledger service and its operations tools:
// dev, serve, migrate, rebuild, verify, audit, token, demo, compact and erase.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/migrations"
)

const usage = `runledger: outbound-call queue runs that cannot get stuck.

Usage:
  runledger dev                  local PostgreSQL under ./.data, migrate, serve, print tokens and curl lines
  runledger serve                migrate (unless --no-migrate) and serve against DATABASE_URL
  runledger migrate              apply migrations and exit
  runledger rebuild [--projection NAME]   online rebuild of read models
  runledger verify               diff live read models against a fresh rebuild; exit 1 on difference
  runledger audit --business B [--run R] [--since T] [--until T] [--at T] [--json]
  runledger token --business B --role R [--subject S] [--ttl D] [--data-dir .data]
                                 mint a token (RUNLEDGER_AUTH_SECRET, or the dev data directory's secret)
  runledger compact --ended-before D      remove the heartbeats no replay answer needs from runs ended before now-D
  runledger erase --business B --reason R [--force]   remove a business; --force first cancels its open run
  runledger demo [--url U] [--duration D] [--workers N] [--businesses M] [--data-dir .data]
                 [--stale-after D] [--opening-act=false]
                                 simulated dialers on the worker SDK against a running server

Run 'runledger COMMAND -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	commands := map[string]func(context.Context, []string) error{
		"dev":     runDev,
		"serve":   runServe,
		"migrate": runMigrate,
		"rebuild": runRebuild,
		"verify":  runVerify,
		"audit":   runAudit,
		"token":   runToken,
		"demo":    runDemo,
		"compact": runCompact,
		"erase":   runErase,
	}
	name, args := os.Args[1], os.Args[2:]
	cmd, ok := commands[name]
	if !ok {
		if name == "-h" || name == "--help" || name == "help" {
			fmt.Print(usage)
			return
		}
		fmt.Fprintf(os.Stderr, "runledger: unknown command %q\n\n%s", name, usage)
		os.Exit(2)
	}
	if err := cmd(ctx, args); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(int(exit))
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "runledger:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a code after the command printed its own report.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// parse parses a command's flags and refuses stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// dbCommand is a command that works on the database (migrate, rebuild,
// verify, compact, erase): its flag set carries the common flags
// (--database-url, --log-level) into cfg, and open parses the command line
// and opens the command's own small pool.
type dbCommand struct {
	*flag.FlagSet
	cfg Config
}

// newDBCommand returns the flag set of the database command name, with the
// common flags bound; the command adds its own before open.
func newDBCommand(name string) *dbCommand {
	c := &dbCommand{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.cfg.bindCommon(c.FlagSet)
	return c
}

// open parses args (refusing stray ones and malformed environment values)
// and opens the command's pool, named for pg_stat_activity after the command.
func (c *dbCommand) open(ctx context.Context, args []string) (*pgxpool.Pool, error) {
	if err := parse(c.FlagSet, args); err != nil {
		return nil, err
	}
	if err := c.cfg.envError(); err != nil {
		return nil, err
	}
	return openPool(ctx, c.cfg.DatabaseURL, opsPool(c.Name()))
}

func runMigrate(ctx context.Context, args []string) error {
	pool, err := newDBCommand("migrate").open(ctx, args)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := migrations.Apply(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Println("migrate: up to date")
	}
	for _, name := range applied {
		fmt.Println("migrate: applied", name)
	}
	return nil
}
