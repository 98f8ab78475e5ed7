// Package pglocal runs a private PostgreSQL cluster from the machine's server
// binaries, for `runledger dev` and for tests. It initialises the data
// directory on first use, starts the server on a loopback port with its
// socket inside the data directory, and stops it. When the process runs as
// root, PostgreSQL refuses to start, so the server runs as the "postgres"
// user (or RUNLEDGER_PG_USER) through the child process's credentials.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries is returned when no PostgreSQL server binaries are found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (looked in $PG_BIN, PATH, `pg_config --bindir` and /usr/lib/postgresql/*/bin); " +
	"install them (Debian: apt-get install postgresql) or set DATABASE_URL / TEST_DATABASE_URL to an existing server")

// Options configure a cluster.
type Options struct {
	// Dir is the data directory; it is created and initialised if empty.
	Dir string
	// Port to listen on 127.0.0.1; 0 picks a free one (reused from a previous
	// start of the same Dir when possible).
	Port int
	// Fast turns off durability (fsync, full page writes): for throwaway test clusters only.
	Fast bool
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
	// LogFile receives the server's log; default Dir/server.log.
	LogFile string
}

// Cluster is a running local PostgreSQL server.
type Cluster struct {
	BinDir string
	Dir    string
	Port   int
	cred   *syscall.Credential
}

// FindBinDir returns the directory holding initdb, pg_ctl and postgres, or ErrNoBinaries.
func FindBinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("PG_BIN"); d != "" {
		candidates = append(candidates, d)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real // a link in /usr/local/bin: the server's other tools sit beside the target
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool { return pgMajor(versioned[i]) > pgMajor(versioned[j]) })
	candidates = append(candidates, versioned...)
	for _, d := range candidates {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start initialises opts.Dir if needed and starts the server, waiting until it accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: bin, Dir: dir}
	if c.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if c.Port = opts.Port; c.Port == 0 {
		if c.Port, err = c.pickPort(); err != nil {
			return nil, err
		}
	}
	if err := c.start(ctx, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// serverCredential returns the credential to run the server under: none
// unless we are root, then the postgres user's.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("RUNLEDGER_PG_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as an unprivileged user, but user %q was not found "+
			"(create it, e.g. `useradd -r postgres`, or set RUNLEDGER_PG_USER): %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	if err := c.chown(c.Dir); err != nil {
		return err
	}
	out, err := c.command(ctx, "initdb", "-D", c.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.Dir, err, out)
	}
	return nil
}

// chown gives the server user the directory, and lets it traverse the parents.
func (c *Cluster) chown(dir string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return err
	}
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("let the postgres user traverse %s: %w", p, err)
			}
		}
	}
	return nil
}

func (c *Cluster) pickPort() (int, error) {
	if b, err := os.ReadFile(filepath.Join(c.Dir, "runledger.port")); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && portFree(p) {
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if c.Running(ctx) {
		port, err := c.runningPort()
		if err != nil {
			return err
		}
		c.Port = port
		return nil
	}
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.Port),
		"unix_socket_directories": c.Dir,
		"max_connections":         "200",
	}
	if opts.Fast {
		settings["fsync"] = "off"
		settings["full_page_writes"] = "off"
		settings["synchronous_commit"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var o strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&o, "-c %s=%s ", k, settings[k])
	}
	logFile := opts.LogFile
	if logFile == "" {
		logFile = filepath.Join(c.Dir, "server.log")
	}
	out, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "-l", logFile, "-w", "-t", "60", "-o", o.String(), "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail(string(log), 2000))
	}
	return os.WriteFile(filepath.Join(c.Dir, "runledger.port"), []byte(strconv.Itoa(c.Port)), 0o644)
}

// StopWhenGone starts a watchdog that stops the server once process pid has
// exited, so a throwaway cluster does not outlive a test binary that was
// killed before its cleanup ran (a fuzz worker, a timeout, a crash). It runs
// as the cluster's user in its own process group, and looks for /proc/PID
// (kill -0 on another user's process would fail with EPERM).
func (c *Cluster) StopWhenGone(pid int) error {
	script := fmt.Sprintf(`while [ -d /proc/%d ]; do sleep 1; done; exec "$0" -D "$1" -m immediate stop`, pid)
	cmd := exec.Command("/bin/sh", "-c", script, filepath.Join(c.BinDir, "pg_ctl"), c.Dir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start cluster watchdog: %w", err)
	}
	return cmd.Process.Release()
}

// Running reports whether the cluster's server is up.
func (c *Cluster) Running(ctx context.Context) bool {
	return c.command(ctx, "pg_ctl", "-D", c.Dir, "status").Run() == nil
}

// runningPort reads the port of a server that is already running from postmaster.pid.
func (c *Cluster) runningPort() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, fmt.Errorf("postmaster.pid: unexpected format")
	}
	return strconv.Atoi(strings.TrimSpace(lines[3]))
}

// Stop shuts the server down (fast mode: active sessions are disconnected).
func (c *Cluster) Stop(ctx context.Context) error {
	out, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// URL is a connection string for database name on this cluster.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, database)
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = "/"
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// The server must outlive a cancelled context of the caller that started it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	return cmd
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
