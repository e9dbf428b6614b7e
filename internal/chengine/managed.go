package chengine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A managed engine is a child process. Once it has answered, a watcher
// waits on it; when it exits without being asked to, the watcher restarts
// it on the same ports and data, as systemd's Restart=always would, with
// a backoff, and gives up after too many failed starts in a row so that
// `serve` stops with an error instead of looping.
const (
	defaultMaxFailedStarts = 5
	firstBackoff           = time.Second
	maxBackoff             = 30 * time.Second
	// stableRun: an engine that exits sooner than this after it answered
	// counts as a failed start.
	stableRun = time.Minute
	// startTimeout bounds how long a start may take to answer: part
	// loading after a crash can take a while on a big data dir.
	startTimeout = 90 * time.Second
	// stopTimeout bounds a clean stop before the engine is killed.
	stopTimeout = 30 * time.Second
)

// Restart stops a managed engine and starts it again on the same ports and
// data; tests and `make chaos` use it to take ClickHouse away and bring it
// back.
func (s *Server) Restart(ctx context.Context) error {
	if !s.Managed() {
		return errors.New("restart: ClickHouse is external")
	}
	if err := s.StopEngine(); err != nil {
		return err
	}
	return s.StartEngine(ctx)
}

// StartEngine starts a stopped managed engine, on its previous ports when
// it ran before; it does nothing if the engine runs.
func (s *Server) StartEngine(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.mu.Lock()
	s.want = true
	running := s.child != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	return s.startLocked(ctx)
}

// portAttempts bounds how often a start picks new ports for a chdb engine
// whose port was taken between choosing it and the engine binding it
// (another process on the host can take a free port at any moment).
const portAttempts = 3

// startLocked starts the child and waits until it answers. runMu is held.
// The ports of a chdb engine sit behind the relay, so no client knows
// them: when one was taken, the start is tried again on new ones.
func (s *Server) startLocked(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		logged := fileSize(filepath.Join(s.dir, "engine.log"))
		err := s.startOnce(ctx)
		if err == nil || s.nativeRelay == nil || attempt == portAttempts ||
			!logSince(filepath.Join(s.dir, "engine.log"), logged, "Address already in use") {
			return err
		}
		s.log.Warn("ClickHouse engine port was taken before the engine bound it; choosing others", "attempt", attempt)
		s.mu.Lock()
		s.engineNative, s.engineHTTP = "", ""
		s.mu.Unlock()
	}
}

// startOnce starts the child and waits until it answers.
func (s *Server) startOnce(ctx context.Context) error {
	select {
	case <-s.closed:
		return errors.New("ClickHouse engine: closed")
	default:
	}
	tcpPort, err := portOf(s.engineNative)
	if err != nil {
		return err
	}
	httpPort, err := portOf(s.engineHTTP)
	if err != nil {
		return err
	}
	outPath := filepath.Join(s.dir, "engine.log")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening engine output log: %w", err)
	}
	defer out.Close() // the child holds its own descriptor

	logPath, errPath := serverLogPaths(s.dir)
	var cmd *exec.Cmd
	switch s.mode {
	case "chdb":
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding own executable to run the engine: %w", err)
		}
		spec, _ := json.Marshal(childSpec{Lib: s.cfg.EngineLib, Path: filepath.Join(s.dir, "data") + "/",
			TCPPort: tcpPort, HTTPPort: httpPort, Backups: s.backups + "/", Log: logPath, ErrorLog: errPath})
		cmd = exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	case "binary":
		conf, err := writeServerConfig(s.dir, s.backups, tcpPort, httpPort)
		if err != nil {
			return err
		}
		cmd = exec.Command("clickhouse", "server", "--config-file="+conf)
	default:
		return fmt.Errorf("BUG: unknown engine mode %q", s.mode)
	}
	cmd.Dir = s.dir
	// Anything the engine prints outside its logger (a failed library
	// load, a Go runtime error in the child) lands here.
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group keeps a terminal's Ctrl-C away from the engine:
	// the parent stops it in order, after the pipeline has drained. Pdeathsig
	// is the backstop that kills it if the parent dies without closing stdin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := StartChild(cmd); err != nil {
		return fmt.Errorf("starting ClickHouse engine (%s): %w", s.mode, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	s.mu.Lock()
	s.child, s.stdin, s.exited = cmd, stdin, exited
	s.engineNative = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort))
	s.engineHTTP = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	if s.nativeRelay == nil && s.Addr != s.engineNative {
		// Set once: the ports are kept across restarts, and Addr is read
		// without the lock.
		s.Addr, s.HTTPAddr = s.engineNative, s.engineHTTP
	}
	s.mu.Unlock()

	// Clients are taken only once the engine answers: a relay that took a
	// client before could only hang up on it with its hello unread, which
	// the client sees as a reset.
	err = s.awaitAnswer(ctx, cmd, exited)
	if err == nil {
		err = s.listenRelays()
	}
	if err != nil {
		s.stopRelays()
		s.mu.Lock()
		if s.child == cmd {
			s.child = nil
		}
		s.mu.Unlock()
		_ = s.stopChild(cmd, stdin, exited)
		return err
	}
	ep, _ := json.Marshal(endpoint{Native: s.Addr, HTTP: s.HTTPAddr, PID: cmd.Process.Pid})
	if err := os.WriteFile(filepath.Join(s.dir, "endpoint.json"), ep, 0o600); err != nil {
		return fmt.Errorf("writing engine endpoint: %w", err)
	}
	s.mu.Lock()
	s.down = nil
	s.mu.Unlock()
	go s.watch(cmd, exited, time.Now())
	s.log.Info("ClickHouse engine started", "mode", s.mode, "native", s.Addr, "http", s.HTTPAddr, "pid", cmd.Process.Pid, "log", logPath)
	return nil
}

// engineAddr is where the engine itself takes native clients.
func (s *Server) engineAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.engineNative
}

// awaitAnswer polls the new engine until it answers, exits, or the start
// times out.
func (s *Server) awaitAnswer(ctx context.Context, cmd *exec.Cmd, exited chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		checkCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		// The engine's own address: the relay listens once it answers.
		err := s.check(checkCtx, s.engineAddr(), 2*time.Second)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("ClickHouse engine (%s) %s during start; last log lines:\n%s", s.mode, exitStatus(cmd.ProcessState), s.LastLogLines(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ClickHouse engine (%s) did not answer within %v: %v; last log lines:\n%s", s.mode, startTimeout, err, s.LastLogLines(20))
		}
	}
}

// StopEngine stops a managed engine: it closes the engine's stdin (the chdb
// child exits at EOF) or sends SIGTERM (the binary), then waits, and kills it
// if it has not gone within 30 seconds. A stopped engine is not restarted
// until StartEngine. External servers are left alone.
func (s *Server) StopEngine() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.mu.Lock()
	s.want = false
	cmd, stdin, exited := s.child, s.stdin, s.exited
	s.child = nil
	if s.failure == nil {
		s.down, s.downSince = errors.New("the managed engine is stopped"), time.Now()
	}
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	os.Remove(filepath.Join(s.dir, "endpoint.json"))
	// Hung-up clients let the engine stop at once (open connections make
	// it wait for them).
	s.stopRelays()
	if err := s.stopChild(cmd, stdin, exited); err != nil {
		return err
	}
	s.log.Info("ClickHouse engine stopped", "mode", s.mode)
	return nil
}

func (s *Server) stopChild(cmd *exec.Cmd, stdin io.Closer, exited chan struct{}) error {
	stdin.Close()
	if s.mode == "binary" {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("ClickHouse engine did not stop within %v and was killed", stopTimeout)
	}
}

// Close stops a managed engine for good (no restart after it); it is a
// no-op for an external server.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	err := s.StopEngine()
	s.closeRelays()
	return err
}

// Relays exist for a chdb engine only (see relay.go); their addresses,
// fixed at the first start, are Addr and HTTPAddr for the Server's life.
func (s *Server) newRelays() {
	target := func(addr *string) func() string {
		return func() string {
			s.mu.Lock()
			defer s.mu.Unlock()
			return *addr
		}
	}
	s.nativeRelay = newRelay(cmp.Or(s.cfg.NativeAddr, "127.0.0.1:0"), target(&s.engineNative))
	s.httpRelay = newRelay(cmp.Or(s.cfg.HTTPAddr, "127.0.0.1:0"), target(&s.engineHTTP))
}

func (s *Server) listenRelays() error {
	if s.nativeRelay == nil {
		return nil
	}
	if err := s.nativeRelay.listen(); err != nil {
		return err
	}
	if err := s.httpRelay.listen(); err != nil {
		s.nativeRelay.stopListening()
		return err
	}
	s.mu.Lock()
	if s.Addr == "" { // set once: Addr is read without the lock
		s.Addr, s.HTTPAddr = s.nativeRelay.Addr(), s.httpRelay.Addr()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) stopRelays() {
	if s.nativeRelay != nil {
		s.nativeRelay.stopListening()
		s.httpRelay.stopListening()
	}
}

func (s *Server) closeRelays() {
	if s.nativeRelay != nil {
		s.nativeRelay.close()
		s.httpRelay.close()
	}
}

// watch waits for a running engine to exit; an exit nobody asked for is
// logged with the engine's last log lines and supervised.
func (s *Server) watch(cmd *exec.Cmd, exited chan struct{}, answeredAt time.Time) {
	<-exited
	s.mu.Lock()
	if s.child != cmd {
		s.mu.Unlock()
		return // stopped on purpose
	}
	s.child = nil
	status := exitStatus(cmd.ProcessState)
	if time.Since(answeredAt) < stableRun {
		s.failedRuns++
	} else {
		s.failedRuns = 0
	}
	s.down, s.downSince = fmt.Errorf("the managed engine %s at %s; restarting it", status, time.Now().Format(time.TimeOnly)), time.Now()
	s.mu.Unlock()
	os.Remove(filepath.Join(s.dir, "endpoint.json"))
	s.stopRelays()
	s.log.Error("ClickHouse engine exited unexpectedly; restarting it", "status", status, "pid", cmd.Process.Pid,
		"ran", time.Since(answeredAt).Round(time.Second), "log", s.LogPath(), "last_lines", s.LastLogLines(20))
	s.restartLoop()
}

// restartLoop starts the engine again with a backoff (1 s doubling to
// 30 s) until it answers, it is stopped or closed, or too many starts in a
// row have failed.
func (s *Server) restartLoop() {
	for {
		s.mu.Lock()
		n, want, since := s.failedRuns, s.want, s.downSince
		s.mu.Unlock()
		if !want {
			return
		}
		if n >= s.maxFailedStarts() {
			s.giveUp(n)
			return
		}
		select {
		case <-time.After(backoff(n)):
		case <-s.closed:
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		started, err := s.restartOnce(ctx)
		cancel()
		if err == nil {
			if started {
				s.restarts.Add(1)
				s.log.Warn("ClickHouse engine restarted", "down_for", time.Since(since).Round(time.Millisecond), "native", s.Addr)
			}
			return
		}
		s.log.Error("restarting the ClickHouse engine failed", "failed_starts", n+1, "err", err)
	}
}

// restartOnce starts the engine unless it was stopped or started
// meanwhile; started says whether this call started it.
func (s *Server) restartOnce(ctx context.Context) (started bool, err error) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.mu.Lock()
	want, running := s.want, s.child != nil
	s.mu.Unlock()
	if !want || running {
		return false, nil
	}
	if err := s.startLocked(ctx); err != nil {
		s.mu.Lock()
		s.failedRuns++
		s.down = fmt.Errorf("the managed engine is down since %s; a restart failed: %w", s.downSince.Format(time.TimeOnly), err)
		s.mu.Unlock()
		return false, err
	}
	return true, nil
}

func (s *Server) giveUp(failed int) {
	s.giveUpOnce.Do(func() { s.giveUpLocked(failed) })
}

func (s *Server) giveUpLocked(failed int) {
	s.mu.Lock()
	s.failure = fmt.Errorf("the managed ClickHouse engine cannot be kept running: %d failed starts in a row (it did not answer, or exited within %v; --clickhouse.engine-max-failed-starts=%d); last: %v; its log: %s",
		failed, stableRun, s.maxFailedStarts(), s.down, s.LogPath())
	s.down = s.failure
	s.mu.Unlock()
	close(s.gaveUp)
}

func (s *Server) maxFailedStarts() int {
	if s.cfg.MaxFailedStarts > 0 {
		return s.cfg.MaxFailedStarts
	}
	return defaultMaxFailedStarts
}

// backoff is the wait before the start that follows n failed ones.
func backoff(n int) time.Duration {
	d := firstBackoff
	for range n {
		if d *= 2; d >= maxBackoff {
			return maxBackoff
		}
	}
	return d
}

// Wait blocks until ctx ends (nil) or the supervisor of a managed engine
// gave up restarting it (why). `serve` runs it as a stage, so that an
// engine that cannot be brought back stops the process.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.gaveUp:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.failure
	}
}

// Down says why a managed engine is not serving (exited and being
// restarted, stopped, given up); nil while it serves, and always for an
// external server, whose health only a query can tell.
func (s *Server) Down() error {
	if !s.Managed() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// Restarts is how often the supervisor restarted an engine that had
// exited unexpectedly.
func (s *Server) Restarts() int64 { return s.restarts.Load() }

// RegisterMetrics registers a managed engine's restart count and up state.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	if !s.Managed() {
		return nil
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "leadpipe_clickhouse_engine_restarts_total",
			Help: "Restarts of the managed ClickHouse engine after it exited unexpectedly."},
			func() float64 { return float64(s.Restarts()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leadpipe_clickhouse_engine_up",
			Help: "1 while the managed ClickHouse engine serves, 0 while it is down."},
			func() float64 {
				if s.Down() != nil {
					return 0
				}
				return 1
			}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering engine metrics: %w", err)
		}
	}
	return nil
}

func portOf(addr string) (int, error) {
	if addr == "" {
		return freePort()
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
