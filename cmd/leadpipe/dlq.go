package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// runDLQ handles `leadpipe dlq list` and `leadpipe dlq replay`: the hits
// the processors set aside because they could never be processed.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usageError{errors.New("usage: leadpipe dlq list|replay [--nats.url URL | --data-dir DIR] [--seq N]")}
	}
	cmd := args[0]
	fs := flag.NewFlagSet("dlq "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf natsFlags
	nf.register(fs)
	seq := fs.Uint64("seq", 0, "replay: only this dead letter (0 = all)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	nc, err := nf.dial("leadpipe dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		return fmt.Errorf("opening %s: %w", bus.DeadLetterStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	replayed := 0
	for s := info.State.FirstSeq; s <= info.State.LastSeq; s++ {
		if *seq != 0 && s != *seq {
			continue
		}
		m, err := st.GetMsg(ctx, s)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading dead letter %d: %w", s, err)
		}
		subject := m.Header.Get(bus.DeadLetterSubjectHeader)
		if cmd == "list" {
			fmt.Fprintf(stdout, "%d\t%s\t%s\t%d bytes\t%s\n", s, m.Time.UTC().Format(time.RFC3339), subject, len(m.Data),
				strconv.Quote(m.Header.Get(bus.DeadLetterReasonHeader)))
			continue
		}
		// Replay: back to its subject, with its hit id so a hit that was
		// already processed meanwhile is not counted twice; then removed
		// from the dead letters.
		msg := nats.NewMsg(subject)
		msg.Data = m.Data
		if h, err := bus.DecodeHit(m.Data); err == nil {
			msg.Header.Set(jetstream.MsgIDHeader, h.MsgID())
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("replaying dead letter %d: %w", s, err)
		}
		if err := st.DeleteMsg(ctx, s); err != nil {
			return fmt.Errorf("removing replayed dead letter %d: %w", s, err)
		}
		replayed++
	}
	if cmd == "replay" {
		fmt.Fprintf(stdout, "replayed %d dead letter(s)\n", replayed)
	}
	return nil
}
