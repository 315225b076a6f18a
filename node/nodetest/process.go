package nodetest

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a running `parzelle serve`: its listeners as its banner
// names them, and its log (what it writes to stderr).
type Process struct {
	Cmd *exec.Cmd
	// Transport and Ops are the listeners' host:port.
	Transport, Ops string

	exited chan struct{}
	err    error
	mu     sync.Mutex
	log    bytes.Buffer
}

var bannerURL = regexp.MustCompile(`https?://([0-9.:]+)/`)

// Serve starts cmd, a `parzelle serve`, and waits up to two minutes for
// its banner; the process is killed when the test ends.
func Serve(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = p
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			m := bannerURL.FindStringSubmatch(line)
			switch {
			case m != nil && strings.Contains(line, "transport"):
				p.Transport = m[1]
			case m != nil && strings.Contains(line, "console"):
				p.Ops = m[1]
				close(up)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.Kill)
	select {
	case <-up:
		t.Logf("serve printed its banner after %.1fs", time.Since(start).Seconds())
	case <-p.exited:
		t.Fatalf("serve exited before serving: %v\n%s", p.err, p.Log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no banner within two minutes\n%s", p.Log())
	}
	return p
}

// Exited is closed once the process has ended; Err then says how.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended (once Exited is closed).
func (p *Process) Err() error { return p.err }

// Kill kills the process with SIGKILL and waits until it has ended.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Write takes the process's stderr.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

// Log is what the process wrote to stderr so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}
