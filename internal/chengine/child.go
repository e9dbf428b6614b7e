package chengine

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/ebitengine/purego"
)

// childEnv names the environment variable through which a parent hands the
// engine's settings to its re-executed self. Its presence is what makes a
// process an engine child.
const childEnv = "LEADPIPE_CHDB_ENGINE"

// childSpec is what the child needs to serve: the library, the data path and
// the two loopback ports.
type childSpec struct {
	Lib      string `json:"lib"`
	Path     string `json:"path"`
	TCPPort  int    `json:"tcp_port"`
	HTTPPort int    `json:"http_port"`
	// Backups is where BACKUP … TO File(…) may write (backups.allowed_path).
	Backups string `json:"backups"`
	// Log and ErrorLog are the engine's own server log (warnings and up,
	// size-rotated) and its errors alone; a fatal signal's stack trace is
	// written there.
	Log      string `json:"log"`
	ErrorLog string `json:"error_log"`
}

// MaybeRunChild turns the current process into a ClickHouse engine child when
// its parent started it as one, and exits when the engine stops. Call it first
// thing in main, and in TestMain of every test package that starts an engine:
// the child is the same executable re-run, so that no second binary has to be
// built or installed.
func MaybeRunChild() {
	raw, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "chdb engine: bad %s: %v\n", childEnv, err)
		os.Exit(2)
	}
	if err := runChild(spec); err != nil {
		fmt.Fprintf(os.Stderr, "chdb engine: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild loads libchdb and serves the native and HTTP protocols until
// standard input reaches EOF: the query that keeps the engine busy reads
// stdin to its end, so the parent stops the engine by closing the pipe, and a
// parent that dies closes it too.
func runChild(spec childSpec) error {
	runtime.LockOSThread()
	lib, err := purego.Dlopen(spec.Lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("loading %s: %w", spec.Lib, err)
	}
	var queryCmdline func(argc int32, argv **byte) uintptr
	var resultError func(res uintptr) *byte
	purego.RegisterLibFunc(&queryCmdline, lib, "chdb_query_cmdline")
	purego.RegisterLibFunc(&resultError, lib, "chdb_result_error")

	// argv[0] is the program name, as for a real main(): the engine skips
	// it, so anything put first would be silently ignored (a first --path
	// leaves the data in a temporary directory).
	args := []string{
		"clickhouse",
		"--path=" + spec.Path,
		fmt.Sprintf("--tcp_port=%d", spec.TCPPort),
		fmt.Sprintf("--http_port=%d", spec.HTTPPort),
		"--listen_host=127.0.0.1",
		"--query=SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
			"SELECT count() FROM file('/dev/stdin', 'LineAsString') FORMAT Null",
		// Server settings without an option of their own come after "--".
		"--",
		"--backups.allowed_path=" + spec.Backups,
	}
	if spec.Log != "" {
		args = append(args, "--logger.log="+spec.Log, "--logger.errorlog="+spec.ErrorLog,
			"--log-level=warning", "--logger.size=10M", "--logger.count=3")
	}
	cargs := make([]*byte, len(args)+1)
	keep := make([][]byte, len(args))
	for i, a := range args {
		keep[i] = append([]byte(a), 0)
		cargs[i] = &keep[i][0]
	}
	res := queryCmdline(int32(len(args)), &cargs[0])
	runtime.KeepAlive(keep)
	if res == 0 {
		return fmt.Errorf("engine returned no result")
	}
	if p := resultError(res); p != nil {
		if msg := goString(p); msg != "" {
			return fmt.Errorf("engine stopped: %s", msg)
		}
	}
	return nil
}

func goString(p *byte) string {
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
