package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// runIPDB handles `leadpipe ipdb reload`: it asks every running leadpipe
// process on the NATS server to reload its IP data files, and prints each
// process's answer. (A single process also reloads on SIGHUP.)
func runIPDB(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "reload" {
		return usageError{errors.New("usage: leadpipe ipdb reload [--nats.url URL | --data-dir DIR] [--wait 3s]")}
	}
	fs := flag.NewFlagSet("ipdb reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf natsFlags
	nf.register(fs)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the first answer (a reload takes seconds); later answers are collected until none came for 2s")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	nc, err := nf.dial("leadpipe ipdb reload")
	if err != nil {
		return err
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	if err := nc.PublishRequest(bus.IPDBReloadSubject, inbox, nil); err != nil {
		return fmt.Errorf("sending the reload request: %w", err)
	}
	// Processes reload at the same time, so their answers arrive close
	// together: after the first, stop once none came for a grace period.
	deadline := time.Now().Add(*wait)
	const grace = 2 * time.Second
	answers, failures := 0, 0
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		deadline = time.Now().Add(grace)
		var r bus.IPDBReloadReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			continue
		}
		answers++
		if r.OK {
			fmt.Fprintf(stdout, "%s: reloaded in %s\n", r.Process, r.Took)
		} else {
			failures++
			fmt.Fprintf(stdout, "%s: reload failed, still using the previous data: %s\n", r.Process, r.Error)
		}
	}
	switch {
	case answers == 0:
		return fmt.Errorf("no leadpipe process answered on %s within %v", nc.ConnectedUrlRedacted(), *wait)
	case failures > 0:
		return fmt.Errorf("%d of %d processes could not reload", failures, answers)
	}
	return nil
}
