package main

import (
	"flag"

	"github.com/nats-io/nats.go"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// natsFlags are how a command that talks to a running installation finds
// its NATS: --nats.url (with TLS files) for an external NATS or cluster,
// else the embedded server of the serve running on --data-dir, whatever
// its --nats.listen. A command that cannot tell refuses, naming the flag;
// it never guesses a default port (that reached another installation's
// server once).
type natsFlags struct {
	cfg     bus.Config
	dataDir string
}

func (f *natsFlags) register(fs *flag.FlagSet) {
	f.cfg.RegisterClientFlags(fs)
	fs.StringVar(&f.dataDir, "data-dir", "./data", "data dir of the running serve whose NATS to use when --nats.url is empty")
}

// url is --nats.url, else the running serve's.
func (f *natsFlags) url() (string, error) {
	if f.cfg.URL != "" {
		return f.cfg.URL, nil
	}
	return bus.Endpoint(f.dataDir)
}

func (f *natsFlags) dial(name string) (*nats.Conn, error) {
	cfg := f.cfg
	var err error
	if cfg.URL, err = f.url(); err != nil {
		return nil, err
	}
	return bus.Dial(cfg, name)
}
