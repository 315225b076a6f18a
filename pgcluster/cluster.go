// Package pgcluster creates, starts and stops a local PostgreSQL cluster from
// the machine's own PostgreSQL binaries: the embedded database of `make run`
// and the throwaway cluster of `make test`.
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// cluster runs as the unprivileged "postgres" system user that Debian's
// package creates, and the data directory belongs to that user.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Superuser is the name of the cluster's bootstrap superuser.
const Superuser = "postgres"

// TestURLEnv names the environment variable that hands tests the URL of a
// role that may create databases (see `parzelle pg temp`).
const TestURLEnv = "PARZELLE_TEST_DATABASE_URL"

// Cluster is one PostgreSQL cluster in a directory: Dir/data holds the
// cluster, Dir/postgres.log its server log, Dir/superuser.pass the
// superuser's password, Dir/port the TCP port it listens on (127.0.0.1) and
// Dir/run its Unix-domain socket, which the node and tests connect through:
// the same machine's PostgreSQL answers there with less kernel work than
// over TCP (about 5 % of the machine's CPU in bench-pipeline).
type Cluster struct {
	Dir    string
	binDir string
	owner  *osUser // nil: run as the calling user
	// Throwaway clusters trade durability for speed (fsync off).
	Throwaway bool
	// MaxConnections is set at initdb time; 0 keeps PostgreSQL's default.
	MaxConnections int
}

type osUser struct {
	name     string
	uid, gid uint32
}

// New returns the cluster in dir, locating the PostgreSQL binaries (pg_config
// --bindir, or the newest /usr/lib/postgresql/*/bin). It does not touch dir.
func New(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: resolve %s: %w", dir, err)
	}
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // a cluster relocated for the postgres user (see Init)
	}
	c := &Cluster{Dir: abs, binDir: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(Superuser)
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root, PostgreSQL must run as the %q system user, which does not exist (install Debian's postgresql package): %w", Superuser, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.owner = &osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	}
	return c, nil
}

// BinDir is the directory holding initdb, pg_ctl and postgres.
func (c *Cluster) BinDir() string { return c.binDir }

func findBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries found (initdb); install them with `apt-get install postgresql`")
}

func versionOf(initdbPath string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return v
}

func (c *Cluster) dataDir() string   { return filepath.Join(c.Dir, "data") }
func (c *Cluster) logFile() string   { return filepath.Join(c.Dir, "postgres.log") }
func (c *Cluster) passFile() string  { return filepath.Join(c.Dir, "superuser.pass") }
func (c *Cluster) portFile() string  { return filepath.Join(c.Dir, "port") }
func (c *Cluster) socketDir() string { return filepath.Join(c.Dir, "run") }

// maxSocketPath is the longest Unix-domain socket path Linux takes (108
// bytes with the terminating NUL).
const maxSocketPath = 107

// Initialized reports whether the cluster's data directory exists.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION"))
	return err == nil
}

// Init creates the cluster unless it exists: initdb with a random superuser
// password (scram-sha-256 for every connection) and a free TCP port on
// 127.0.0.1 that the cluster keeps from then on.
func (c *Cluster) Init(ctx context.Context) error {
	if c.Initialized() {
		return nil
	}
	if err := c.relocate(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: create %s: %w", c.Dir, err)
	}
	if err := c.checkOwnerCanReach(); err != nil {
		return err
	}
	// A half-made data directory from an interrupted initdb is useless.
	if err := os.RemoveAll(c.dataDir()); err != nil {
		return fmt.Errorf("pgcluster: remove incomplete %s: %w", c.dataDir(), err)
	}
	if err := c.mkdirOwned(c.dataDir(), 0o700); err != nil {
		return err
	}
	password := NewPassword()
	pwfile := filepath.Join(c.Dir, ".initdb-pw")
	os.Remove(pwfile) // left over if an earlier initdb was interrupted
	if err := c.writeOwned(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if out, err := c.run(ctx, "initdb", "-D", c.dataDir(), "-U", Superuser, "--pwfile", pwfile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"); err != nil {
		return fmt.Errorf("pgcluster: initdb in %s: %w\n%s", c.dataDir(), err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// The socket lives in the cluster's directory, unless its path would
	// be too long for a socket (a deep checkout): then TCP alone.
	sockets := ""
	if len(filepath.Join(c.socketDir(), fmt.Sprintf(".s.PGSQL.%d", port))) <= maxSocketPath && !strings.ContainsAny(c.socketDir(), "',") {
		os.RemoveAll(c.socketDir()) // left over if an earlier Init was interrupted
		if err := c.mkdirOwned(c.socketDir(), 0o755); err != nil {
			return err
		}
		sockets = c.socketDir()
	}
	conf := fmt.Sprintf("\n# written by parzelle\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n", port, sockets)
	if c.MaxConnections > 0 {
		conf += fmt.Sprintf("max_connections = %d\n", c.MaxConnections)
	}
	if c.Throwaway {
		conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
	}
	if err := appendFile(filepath.Join(c.dataDir(), "postgresql.conf"), conf); err != nil {
		return fmt.Errorf("pgcluster: configure: %w", err)
	}
	if err := os.WriteFile(c.passFile(), []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.WriteFile(c.portFile(), []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// Running reports whether the cluster's server is up (pg_ctl status).
func (c *Cluster) Running(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir(), "status")
	return err == nil
}

// Start starts the server unless it runs already and waits until it accepts
// connections. started is false when it was running before: then the caller
// did not start it and should not stop it either.
func (c *Cluster) Start(ctx context.Context) (started bool, err error) {
	if !c.Initialized() {
		return false, fmt.Errorf("pgcluster: %s holds no cluster; initialise it first", c.Dir)
	}
	if c.Running(ctx) {
		return false, nil
	}
	if c.owner != nil {
		// The log file sits outside the data directory; the server writes it.
		if err := c.writeOwned(c.logFile(), nil, 0o640); err != nil && !errors.Is(err, os.ErrExist) {
			return false, err
		}
	}
	out, err := c.run(ctx, "pg_ctl", "-D", c.dataDir(), "-l", c.logFile(), "-w", "-t", "120", "start")
	if err != nil {
		return false, fmt.Errorf("pgcluster: start server in %s: %w\n%s\nlast lines of %s:\n%s", c.dataDir(), err, out, c.logFile(), tail(c.logFile(), 15))
	}
	return true, nil
}

// Stop stops the server (fast shutdown: sessions are ended, the data is
// consistent) and waits for it to exit.
func (c *Cluster) Stop(ctx context.Context) error {
	if !c.Running(ctx) {
		return nil
	}
	if out, err := c.run(ctx, "pg_ctl", "-D", c.dataDir(), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pgcluster: stop server in %s: %w\n%s", c.dataDir(), err, out)
	}
	return nil
}

// Port is the TCP port the cluster listens on at 127.0.0.1.
func (c *Cluster) Port() (int, error) {
	b, err := os.ReadFile(c.portFile())
	if err != nil {
		return 0, fmt.Errorf("pgcluster: read port: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// SuperuserURL is the connection URL of the cluster's superuser, for the
// given database.
func (c *Cluster) SuperuserURL(database string) (string, error) {
	pw, err := os.ReadFile(c.passFile())
	if err != nil {
		return "", fmt.Errorf("pgcluster: read superuser password: %w", err)
	}
	return c.URL(Superuser, strings.TrimSpace(string(pw)), database)
}

// URL is the connection URL of a role of the cluster, for the given
// database: through the cluster's Unix-domain socket when it has one (a
// cluster made before it had one keeps TCP), else at 127.0.0.1.
func (c *Cluster) URL(role, password, database string) (string, error) {
	port, err := c.Port()
	if err != nil {
		return "", err
	}
	if info, err := os.Stat(c.socketDir()); err == nil && info.IsDir() {
		return socketURL(role, password, c.socketDir(), port, database), nil
	}
	return URL(role, password, port, database), nil
}

// URL builds a connection URL for a role on a cluster at 127.0.0.1.
func URL(role, password string, port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(role, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// socketURL builds a connection URL for a role on a cluster whose socket is
// in directory dir.
func socketURL(role, password, dir string, port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(role, password),
		Path:     "/" + database,
		RawQuery: url.Values{"host": {dir}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// run runs one PostgreSQL binary, as the postgres user when we are root, in
// its own process group so that a Ctrl-C in the terminal reaches only us: we
// then stop the server cleanly.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = c.Dir
	if c.owner != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.owner.uid, Gid: c.owner.gid}
		cmd.Env = append(os.Environ(), "HOME="+c.Dir, "USER="+c.owner.name, "LOGNAME="+c.owner.name)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// RelocateBase is where a cluster lives whose directory the postgres user
// cannot reach (see Init).
var RelocateBase = "/var/lib/parzelle"

// relocate puts a new cluster where the postgres user can reach it when we
// are root and it cannot reach Dir (a checkout under /root, mode 0700):
// the cluster lives in RelocateBase and Dir becomes a link to it, so that
// Dir/url and the other files stay where the README says.
func (c *Cluster) relocate() error {
	if c.owner == nil || c.canReach(filepath.Dir(c.Dir)) == nil {
		return nil
	}
	if entries, err := os.ReadDir(c.Dir); err == nil && len(entries) > 0 {
		return c.canReach(c.Dir) // an existing cluster is not moved behind the operator's back
	}
	sum := sha256.Sum256([]byte(c.Dir))
	target := filepath.Join(RelocateBase, "pg-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("pgcluster: relocate the cluster for the %q user: %w", c.owner.name, err)
	}
	if err := c.canReach(target); err != nil {
		return err
	}
	_ = os.Remove(c.Dir) // an empty directory
	if err := os.MkdirAll(filepath.Dir(c.Dir), 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Symlink(target, c.Dir); err != nil {
		return fmt.Errorf("pgcluster: link %s to the relocated cluster: %w", c.Dir, err)
	}
	c.Dir = target
	return nil
}

// checkOwnerCanReach makes sure the postgres user can reach the cluster
// directory: every parent must be searchable by it.
func (c *Cluster) checkOwnerCanReach() error { return c.canReach(c.Dir) }

// canReach says whether the postgres user can enter dir and every existing
// parent of it.
func (c *Cluster) canReach(path string) error {
	if c.owner == nil {
		return nil
	}
	for dir := path; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) && dir != filepath.Dir(dir) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 ||
			(st != nil && st.Gid == c.owner.gid && mode&0o010 != 0) ||
			(st != nil && st.Uid == c.owner.uid && mode&0o100 != 0)
		if !ok {
			return fmt.Errorf("pgcluster: PostgreSQL runs as the %q user (we are root), which cannot enter %s (mode %v); "+
				"put the cluster directory where that user can reach it, allow it with `chmod o+x %s`, or set DATABASE_URL to an existing database",
				c.owner.name, dir, mode, dir)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

func (c *Cluster) mkdirOwned(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.chown(dir)
}

func (c *Cluster) writeOwned(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: write %s: %w", path, err)
	}
	return c.chown(path)
}

func (c *Cluster) chown(path string) error {
	if c.owner == nil {
		return nil
	}
	if err := os.Chown(path, int(c.owner.uid), int(c.owner.gid)); err != nil {
		return fmt.Errorf("pgcluster: hand %s to the %s user: %w", path, c.owner.name, err)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NewPassword returns a random password of 48 hex digits.
func NewPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
