// Package harness runs leadpipe's processes for the load tools under bench/
// (make chaos, make bench): children supervised as systemd would, readiness
// and drain waits, the schema on the managed engine.
//
// It imports internal/bus, internal/chengine and store.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/store"
)

// Workspace resolves the leadpipe binary the run measures (refusing a
// missing one with the hint to build it) and makes the run's directory;
// done removes the directory unless keep.
func Workspace(binFlag, prefix string, keep bool) (bin, dir string, done func(), err error) {
	if bin, err = filepath.Abs(binFlag); err != nil {
		return "", "", nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", "", nil, fmt.Errorf("--bin: %w (run `make build`)", err)
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", "", nil, err
	}
	if keep {
		Say("run directory: %s", dir)
		return bin, dir, func() {}, nil
	}
	return bin, dir, func() { os.RemoveAll(dir) }, nil
}

// Say prints a timestamped progress line.
func Say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Drain waits until the processors' consumer has nothing left to deliver
// and nothing delivered awaits its ack (twice in a row, half a second
// apart), and returns how many messages the stream still holds: in a work
// queue those should be none, but a message whose ack JetStream recorded
// just as it was shut down can stay behind (its hit is stored; MaxAge
// removes it), which the report shows.
func Drain(ctx context.Context, js jetstream.JetStream, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	quiet := 0
	for {
		var err error
		var c jetstream.Consumer
		if c, err = js.Consumer(ctx, bus.HitsStream, "processor"); err == nil {
			var ci *jetstream.ConsumerInfo
			if ci, err = c.Info(ctx); err == nil {
				if ci.NumPending == 0 && ci.NumAckPending == 0 {
					quiet++
				} else {
					quiet = 0
					err = fmt.Errorf("%d hits not yet delivered, %d awaiting an ack", ci.NumPending, ci.NumAckPending)
				}
			}
		}
		if quiet >= 2 {
			s, err := js.Stream(ctx, bus.HitsStream)
			if err != nil {
				return 0, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.State.Msgs, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the backlog did not drain within %v: %v", timeout, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("draining the backlog: %w (%v)", context.Cause(ctx), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Migrate creates the database and applies the schema on the engine.
func Migrate(ctx context.Context, ch *chengine.Server) error {
	def, err := ch.OpenDefault()
	if err != nil {
		return err
	}
	defer def.Close()
	if err := store.CreateDatabase(ctx, def, ch.Database()); err != nil {
		return err
	}
	conn, err := ch.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = store.Migrate(ctx, conn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return err
}

// Child is a leadpipe process of the run, kept running as a supervisor
// (systemd's Restart=always) would: kill stops it with SIGKILL and starts it
// again at once, and if it exits by itself (a processor that cannot reach
// ClickHouse at start, say), it is started again a second later.
type Child struct {
	Name, Bin, Dir string
	Args           []string
	// Env is added to the environment the process inherits.
	Env []string
	log *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	stopping bool
	restarts int // after exiting by itself
}

func (c *Child) LogPath() string { return filepath.Join(c.Dir, c.Name+".log") }

// LastLines is the end of the process's log.
func (c *Child) LastLines(n int) string {
	b, _ := os.ReadFile(c.LogPath())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Child) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startLocked()
}

func (c *Child) startLocked() error {
	if c.log == nil {
		f, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		c.log = f
	}
	cmd := exec.Command(c.Bin, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := chengine.StartChild(cmd); err != nil {
		return fmt.Errorf("starting %s: %w", c.Name, err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	go c.watch(cmd, exited)
	return nil
}

func (c *Child) watch(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	close(exited)
	c.mu.Lock()
	mine := !c.stopping && c.cmd == cmd
	c.mu.Unlock()
	if !mine {
		return // killed or stopped on purpose
	}
	Say("%s exited by itself (%v); starting it again, as a supervisor would", c.Name, err)
	time.Sleep(time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping || c.cmd != cmd {
		return
	}
	c.restarts++
	if err := c.startLocked(); err != nil {
		Say("%s: %v", c.Name, err)
	}
}

func (c *Child) Kill() error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd != nil {
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		<-exited
	}
	return c.Start()
}

func (c *Child) Stop() {
	c.mu.Lock()
	c.stopping = true
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if c.log != nil {
		c.log.Close()
	}
}

// PID is the process id of the running process (0 if none).
func (c *Child) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Signal sends sig to the running process (SIGSTOP pauses it, SIGCONT
// resumes it).
func (c *Child) Signal(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return errors.New(c.Name + " is not running")
	}
	return c.cmd.Process.Signal(sig)
}

// Restarts is how often the process exited by itself and was started again.
func (c *Child) Restarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

// WaitReady polls url until it answers 200.
func WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// FreePort is a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
