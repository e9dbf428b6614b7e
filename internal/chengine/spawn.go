package chengine

import (
	"os/exec"
	"runtime"
)

// The kernel sends a child its Pdeathsig when the thread that started it
// exits, not the process (go.dev/issue/27505), and the Go runtime may end a
// thread while the process lives on: a child started from an ordinary
// goroutine can be killed at a random moment. So children that set one are
// started from a goroutine locked to its thread for the life of the
// process.
var spawns = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for f := range spawns {
			f()
		}
	}()
}

// StartChild starts cmd from a thread that lives as long as this process, so
// that a Pdeathsig in cmd.SysProcAttr fires when the process dies and only
// then.
func StartChild(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawns <- func() { errc <- cmd.Start() }
	return <-errc
}
