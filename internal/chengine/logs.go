// Logs of a managed engine: where they are, and reading their end when
// the engine fails.

package chengine

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// serverLogPaths are the engine's own server log (warnings and up,
// rotated at 10 MB, 3 files kept) and the file that holds its errors
// alone; a fatal signal's stack trace is written to both.
func serverLogPaths(dir string) (log, errorLog string) {
	return filepath.Join(dir, "server.log"), filepath.Join(dir, "server.err.log")
}

// LogPath is a managed engine's own server log; empty for an external
// server.
func (s *Server) LogPath() string {
	if !s.Managed() {
		return ""
	}
	p, _ := serverLogPaths(s.dir)
	return p
}

// LastLogLines is the end of a managed engine's error log (its errors
// and fatal messages; warnings and unsymbolised stack frames, which
// crowd out the reason, left out) and of what it printed outside its
// logger: where a crash leaves its reason.
func (s *Server) LastLogLines(n int) string {
	_, errPath := serverLogPaths(s.dir)
	var b strings.Builder
	for _, p := range []string{errPath, filepath.Join(s.dir, "engine.log")} {
		if lines := lastLines(p, n); lines != "" {
			fmt.Fprintf(&b, "==> %s <==\n%s\n", p, lines)
		}
	}
	if b.Len() == 0 {
		return "(the engine's logs are empty)"
	}
	return strings.TrimSpace(b.String())
}

// lastLines is the last n telling lines of the file at path, reading at
// most its last 256 KiB.
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	var kept [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if telling(line) {
			kept = append(kept, line)
		}
	}
	if len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	return string(bytes.Join(kept, []byte("\n")))
}

// telling drops empty lines, warnings and stack frames without symbols
// ("3. ? @ 0x…"), which the engine's release build prints by the dozen.
func telling(line []byte) bool {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || bytes.Contains(line, []byte("<Warning>")) || bytes.Contains(line, []byte(". ? @ 0x")) {
		return false
	}
	return true
}

// exitStatus says how a process ended: its exit status or its signal.
func exitStatus(ps *os.ProcessState) string {
	if ps == nil {
		return "ended"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		name := unix.SignalName(ws.Signal())
		if name == "" {
			name = ws.Signal().String()
		}
		if ws.CoreDump() {
			return "was killed by " + name + " (core dumped)"
		}
		return "was killed by " + name
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince reports whether the file at path holds want after its first
// offset bytes.
func logSince(path string, offset int64, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return bytes.Contains(b, []byte(want))
}
