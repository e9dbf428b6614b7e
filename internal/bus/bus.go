package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the streams and buckets.
const (
	HitsStream     = "HITS"
	HitsSubjects   = "hits.>"
	AccountsBucket = "leadpipe_accounts"
	SitesBucket    = "leadpipe_sites"
	KeysBucket     = "leadpipe_keys"
	SecretsBucket  = "leadpipe_secrets"
	SaltsBucket    = "leadpipe_salts"
	FeedsBucket    = "leadpipe_feeds"
	ErasedBucket   = "leadpipe_erased"
	UsersBucket    = "leadpipe_users"
	LoginsBucket   = "leadpipe_logins"
	RDAPBucket     = "leadpipe_rdap"
	// IdentitiesBucket holds consented identifications: network, site and
	// keyed visitor id → the domain of the address given; LearnedBucket
	// the administrators' removals of learned networks.
	IdentitiesBucket = "leadpipe_identities"
	LearnedBucket    = "leadpipe_learned"
)

// Dead letters: hits that can never be processed, kept with the reason for
// an operator to read and, once the cause is fixed, replay.
const (
	DeadLetterStream   = "DEADLETTERS"
	DeadLetterSubjects = "deadletter.>"
	// DeadLetterReasonHeader carries why the hit was set aside.
	DeadLetterReasonHeader = "Leadpipe-Reason"
	// DeadLetterSubjectHeader carries the subject the hit was published on.
	DeadLetterSubjectHeader = "Leadpipe-Subject"
)

// ErasedKept is how long the marker of an erased visitor stays in the
// erased bucket: longer than a backup is kept (7 days), so that restoring
// any kept backup re-applies the erasures made since.
const ErasedKept = 8 * 24 * time.Hour

// DeadLetterSubject is the dead-letter subject of a hits subject.
func DeadLetterSubject(subject string) string { return "deadletter." + subject }

// IPDBReloadSubject is a core NATS subject (not a stream): every process
// holding IP data subscribes and reloads it when a request arrives, and
// replies with an IPDBReloadReply.
const IPDBReloadSubject = "leadpipe.control.ipdb.reload"

// IPDBReloadReply is one process's answer to a reload request.
type IPDBReloadReply struct {
	Process string `json:"process"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Took    string `json:"took"`
}

// MaxPendingPublishes bounds the collector's asynchronous publishes awaiting
// an ack: beyond it, publishing waits, so a slow JetStream slows the
// collector instead of growing its memory.
const MaxPendingPublishes = 4096

// PublishAsyncTimeout is how long an asynchronous publish may wait for its
// ack before the client gives up on it (the collector stops waiting sooner,
// at --collector.publish-timeout).
const PublishAsyncTimeout = 30 * time.Second

// HitSubject is the subject a site's hits are published on.
func HitSubject(site string) string { return "hits." + site }

// Config is how to reach NATS and how the HITS stream is bounded.
type Config struct {
	// URL of an external NATS server or cluster; empty runs one embedded.
	URL string
	// TLSCA, TLSCert and TLSKey are PEM files for TLS to an external NATS:
	// the CA that signed its certificate (empty: the system's), and a
	// client certificate and key when the servers require one.
	TLSCA, TLSCert, TLSKey string
	// Listen is the embedded server's client address.
	Listen string
	// Encrypt encrypts the embedded server's store at rest (ChaCha20-
	// Poly1305) with the key in <data-dir>/nats.key, made on first start;
	// an existing unencrypted store is converted when it is first opened.
	Encrypt bool
	// Sync is the embedded server's store sync policy: "interval" (the
	// server's default, fsync every 2 minutes) or "always" (fsync every write).
	Sync string
	// Replicas of the HITS stream (3 on a cluster).
	Replicas int
	// HitsMaxAge bounds how long an unprocessed hit (which carries the
	// visitor IP) may wait in the stream.
	HitsMaxAge time.Duration
	// HitsMaxBytes bounds the stream's size; when full, new hits are refused
	// (the collector answers 503) rather than old unprocessed ones discarded.
	HitsMaxBytes int64
	// DuplicateWindow is how long JetStream remembers hit ids to drop
	// retried publishes.
	DuplicateWindow time.Duration
}

// RegisterFlags registers the nats.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "nats.url", "", "external NATS URL(s), comma-separated (empty = embedded server)")
	fs.StringVar(&c.TLSCA, "nats.tls-ca", "", "PEM CA certificate(s) for TLS to the external NATS (tls:// URLs; empty = the system's)")
	fs.StringVar(&c.TLSCert, "nats.tls-cert", "", "PEM client certificate for the external NATS, when it requires one (with --nats.tls-key)")
	fs.StringVar(&c.TLSKey, "nats.tls-key", "", "PEM private key of --nats.tls-cert")
	fs.StringVar(&c.Listen, "nats.listen", "127.0.0.1:4222", "embedded NATS server client address (port 0 = any free port)")
	fs.BoolVar(&c.Encrypt, "nats.encrypt", true, "encrypt the embedded JetStream store at rest with the key in <data-dir>/nats.key (made on first start)")
	fs.StringVar(&c.Sync, "nats.sync", "interval", "embedded JetStream fsync policy: interval (server default, every 2m) or always")
	fs.IntVar(&c.Replicas, "nats.replicas", 1, "replicas of the HITS stream (3 on a NATS cluster)")
	fs.DurationVar(&c.HitsMaxAge, "nats.hits-max-age", 72*time.Hour, "longest time an unprocessed hit is kept in the HITS stream")
	fs.Int64Var(&c.HitsMaxBytes, "nats.hits-max-bytes", 4<<30, "size limit of the HITS stream; when full the collector answers 503")
	fs.DurationVar(&c.DuplicateWindow, "nats.duplicate-window", 2*time.Minute, "how long JetStream recognises a retried hit sent alone by its id (processors recognise retries for 24 h either way)")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--nats.tls-cert and --nats.tls-key: give both, or neither")
	}
	for _, f := range []struct{ flag, path string }{{"--nats.tls-ca", c.TLSCA}, {"--nats.tls-cert", c.TLSCert}, {"--nats.tls-key", c.TLSKey}} {
		if f.path == "" {
			continue
		}
		if c.URL == "" {
			return fmt.Errorf("%s: only for an external NATS (--nats.url)", f.flag)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	if c.URL != "" {
		if _, err := url.Parse(c.URL); err != nil {
			return fmt.Errorf("--nats.url: %q: %v", c.URL, err)
		}
	} else if host, _, err := splitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--nats.listen: %q is not host:port", c.Listen)
	} else if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		// The embedded server has no accounts or credentials: anyone who
		// reaches it reads queued hits with their visitor IPs.
		return fmt.Errorf("--nats.listen: %q is not a loopback address; the embedded server has no credentials, so it only listens on this machine (run a NATS cluster with its own accounts to spread stages over machines: deploy/nats)", c.Listen)
	}
	if c.Sync != "interval" && c.Sync != "always" {
		return fmt.Errorf("--nats.sync: %q is not one of interval, always", c.Sync)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("--nats.replicas: %d is not between 1 and 5", c.Replicas)
	}
	if c.HitsMaxAge < time.Minute {
		return fmt.Errorf("--nats.hits-max-age: %v is shorter than a minute", c.HitsMaxAge)
	}
	if c.HitsMaxBytes < 1<<20 {
		return fmt.Errorf("--nats.hits-max-bytes: %d is less than 1 MiB", c.HitsMaxBytes)
	}
	if c.DuplicateWindow < time.Second || c.DuplicateWindow > c.HitsMaxAge {
		return fmt.Errorf("--nats.duplicate-window: %v must be between 1s and --nats.hits-max-age", c.DuplicateWindow)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// Bus is a connection to JetStream, and the embedded server if it runs one.
type Bus struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Server is the embedded server, nil with an external one.
	Server *server.Server
	cfg    Config
	// endpoint is the file that tells other commands where the embedded
	// server listens; removed at Close.
	endpoint string
}

// Dial connects to the external NATS of cfg (--nats.url, with its TLS
// files): every command that talks to a running installation's NATS
// dials through here, so each one reaches a TLS cluster alike. name is
// the connection's name, as NATS monitoring shows it.
func Dial(cfg Config, name string, opts ...nats.Option) (*nats.Conn, error) {
	if cfg.URL == "" {
		return nil, errors.New("--nats.url: empty")
	}
	opts = append([]nats.Option{nats.Name(name), nats.RetryOnFailedConnect(false), nats.Timeout(5 * time.Second)}, opts...)
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("--nats.url=%s: connecting: %w", cfg.URL, err)
	}
	return nc, nil
}

// RegisterClientFlags registers the flags of a command that only talks to
// a running installation's NATS: --nats.url and its TLS files.
func (c *Config) RegisterClientFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "nats.url", "", "NATS the leadpipe processes use (empty: the one a running serve on --data-dir embeds)")
	fs.StringVar(&c.TLSCA, "nats.tls-ca", "", "PEM CA certificate(s) for TLS to NATS (tls:// URLs; empty = the system's)")
	fs.StringVar(&c.TLSCert, "nats.tls-cert", "", "PEM client certificate, when NATS requires one (with --nats.tls-key)")
	fs.StringVar(&c.TLSKey, "nats.tls-key", "", "PEM private key of --nats.tls-cert")
}

func endpointPath(dataDir string) string { return filepath.Join(dataDir, "nats", "endpoint") }

// writeEndpoint records where the embedded server listens, so that other
// commands on the same data dir (backup, dlq, ipdb reload) reach the NATS
// that a running serve uses, whatever its --nats.listen.
func writeEndpoint(dataDir, url string) error {
	if err := os.WriteFile(endpointPath(dataDir), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("recording the embedded NATS address: %w", err)
	}
	return nil
}

// Endpoint is the client URL of the embedded NATS that a running serve on
// dataDir uses.
func Endpoint(dataDir string) (string, error) {
	raw, err := os.ReadFile(endpointPath(dataDir))
	if err != nil {
		return "", fmt.Errorf("no running serve's NATS recorded under --data-dir %s (%w): give --nats.url", dataDir, err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// Open connects to the external NATS in cfg.URL, or starts an embedded
// JetStream server storing under dataDir/nats, and makes sure the streams
// and buckets exist with the configured limits.
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*Bus, error) {
	b := &Bus{cfg: cfg}
	var err error
	if cfg.URL == "" {
		host, port, _ := splitHostPort(cfg.Listen)
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts := &server.Options{
			ServerName: "leadpipe",
			Host:       host,
			Port:       port,
			JetStream:  true,
			StoreDir:   filepath.Join(dataDir, "nats"),
			NoSigs:     true,
			// A power loss can lose acknowledged writes since the last fsync
			// unless every write is synced: --nats.sync=always trades
			// throughput for that (see the README's durability section).
			SyncAlways:      cfg.Sync == "always",
			MaxPayload:      1 << 20,
			NoSystemAccount: true,
		}
		if cfg.Encrypt {
			if opts.JetStreamKey, err = storeKey(dataDir); err != nil {
				return nil, err
			}
			opts.JetStreamCipher = server.ChaCha
		}
		b.Server, err = server.NewServer(opts)
		if err != nil {
			return nil, fmt.Errorf("configuring embedded NATS: %w", err)
		}
		b.Server.SetLoggerV2(&natsLogger{log: log.With("component", "nats")}, false, false, false)
		go b.Server.Start()
		if !b.Server.ReadyForConnections(30 * time.Second) {
			b.Server.Shutdown()
			return nil, fmt.Errorf("--nats.listen=%s: embedded NATS server not ready within 30s (port in use?)", cfg.Listen)
		}
		b.Conn, err = nats.Connect("", nats.InProcessServer(b.Server), nats.Name("leadpipe"), nats.MaxReconnects(-1))
		if err != nil {
			b.Server.Shutdown()
			return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
		}
		log.Info("embedded NATS JetStream started", "listen", b.Server.ClientURL(), "store", opts.StoreDir, "sync", cfg.Sync, "encrypted", cfg.Encrypt)
		if dataDir != "" {
			if err := writeEndpoint(dataDir, b.Server.ClientURL()); err != nil {
				b.Close()
				return nil, err
			}
			b.endpoint = endpointPath(dataDir)
		}
	} else {
		if b.Conn, err = Dial(cfg, "leadpipe", nats.MaxReconnects(-1)); err != nil {
			return nil, err
		}
	}
	// An ack that never comes must not hold a pending slot forever: the
	// client forgets it after PublishAsyncTimeout.
	b.JS, err = jetstream.New(b.Conn, jetstream.WithPublishAsyncMaxPending(MaxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(PublishAsyncTimeout))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	if err := b.ensure(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// ensureStream creates the stream, or updates it when its limits differ
// from cfg's; one that is already as configured is left alone. Every
// process runs this at start, and an update racing a consumer's creation
// trips a data race inside nats-server (fileStore.UpdateConfig against
// ConsumerStore, seen under -race), so no-op updates are not sent.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	if s, err := b.JS.Stream(ctx, cfg.Name); err == nil {
		have := s.CachedInfo().Config
		if slices.Equal(have.Subjects, cfg.Subjects) && have.Retention == cfg.Retention && have.Discard == cfg.Discard &&
			have.Replicas == cfg.Replicas && have.MaxAge == cfg.MaxAge && have.MaxBytes == cfg.MaxBytes &&
			(cfg.Duplicates == 0 || have.Duplicates == cfg.Duplicates) && (cfg.MaxMsgSize == 0 || have.MaxMsgSize == cfg.MaxMsgSize) {
			return nil
		}
	}
	_, err := b.JS.CreateOrUpdateStream(ctx, cfg)
	return err
}

// ensureBucket is ensureStream for a key-value bucket.
func (b *Bus) ensureBucket(ctx context.Context, cfg jetstream.KeyValueConfig) error {
	if kv, err := b.JS.KeyValue(ctx, cfg.Bucket); err == nil {
		if st, err := kv.Status(ctx); err == nil {
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && st.TTL() == cfg.TTL &&
				st.History() == int64(max(cfg.History, 1)) && bs.StreamInfo().Config.Replicas == cfg.Replicas {
				return nil
			}
		}
	}
	_, err := b.JS.CreateOrUpdateKeyValue(ctx, cfg)
	return err
}

// StoreKeyFile, under the data dir, holds the key the embedded JetStream
// store is encrypted with. It is made on first start; losing it loses the
// store. (Rotating it in place with nats-server's previous-key option was
// tried and fails for streams without messages — "corrupt state file" — so
// leadpipe does not offer it; see the README.)
const StoreKeyFile = "nats.key"

// storeKey reads the store key, making one on first start.
func storeKey(dataDir string) (string, error) {
	path := filepath.Join(dataDir, StoreKeyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		raw = []byte(hex.EncodeToString(buf))
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return "", fmt.Errorf("--data-dir: %w", err)
		}
		// O_EXCL: two processes starting at once cannot both make one.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("creating the store key %s: %w", path, err)
		}
		if _, err := f.Write(append(raw, '\n')); err != nil {
			f.Close()
			return "", fmt.Errorf("writing the store key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("writing the store key %s: %w", path, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("reading the store key %s: %w", path, err)
	}
	key := strings.TrimSpace(string(raw))
	if len(key) < 32 {
		return "", fmt.Errorf("the store key %s is shorter than 32 characters", path)
	}
	return key, nil
}

// ClientURL is the embedded server's address for other processes, or the
// configured external URL.
func (b *Bus) ClientURL() string {
	if b.Server != nil {
		return b.Server.ClientURL()
	}
	return b.cfg.URL
}

func (b *Bus) ensure(ctx context.Context) error {
	err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        HitsStream,
		Description: "page hits accepted by the collector, waiting for processors",
		Subjects:    []string{HitsSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
		// Work queue: a hit is deleted once a processor acknowledged it, so
		// the visitor IP it carries is kept no longer than processing
		// needs, and a full stream means a real backlog.
		Retention: jetstream.WorkQueuePolicy,
		MaxAge:    b.cfg.HitsMaxAge,
		MaxBytes:  b.cfg.HitsMaxBytes,
		// DiscardNew: a full stream refuses new hits (the collector answers
		// 503 and the sender retries) instead of silently deleting old hits
		// that were acknowledged but not yet processed.
		Discard:    jetstream.DiscardNew,
		Duplicates: b.cfg.DuplicateWindow,
		MaxMsgSize: 64 << 10,
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", HitsStream, err)
	}
	if err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "hits that can never be processed, with the reason",
		Subjects:    []string{DeadLetterSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
		// They carry visitor IPs like any hit: kept as long as the HITS
		// stream would keep them, so an operator can look and replay.
		MaxAge:   b.cfg.HitsMaxAge,
		MaxBytes: b.cfg.HitsMaxBytes / 8,
		Discard:  jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("creating stream %s: %w", DeadLetterStream, err)
	}
	buckets := []jetstream.KeyValueConfig{
		{Bucket: AccountsBucket, Description: "accounts: id → name", History: 5},
		{Bucket: SitesBucket, Description: "sites: id → account and settings", History: 5},
		{Bucket: KeysBucket, Description: "API keys: id → hashed secret, role, grants", History: 5},
		{Bucket: SecretsBucket, Description: "installation secrets (visitor id keys)"},
		{Bucket: UsersBucket, Description: "dashboard users: id → e-mail, account, role, grants", History: 5},
		// A sign-in begun with an identity provider must finish within
		// ten minutes; its entry is deleted when it does, so it finishes once.
		{Bucket: LoginsBucket, Description: "sign-ins in progress: state → provider, nonce, PKCE verifier", TTL: 10 * time.Minute},
		// A day's salt for visitors without a client id lives two days, so
		// yesterday's visitor hashes cannot be recomputed after that.
		{Bucket: SaltsBucket, Description: "daily salts for visitors without a client id", TTL: 48 * time.Hour},
		{Bucket: FeedsBucket, Description: "saved feeds: <site>.<id> → name and filters"},
		// An erased visitor's hits may still wait in the HITS stream: the
		// marker outlives them, so processors drop them on arrival. It is
		// kept longer than backups are (ErasedKept), so a restore from a
		// backup older than the erasure erases the visitor again.
		// What the registries said of the networks visitors came from,
		// keyed by network (never by visitor address): answers are used
		// for 30 days, misses for one; the age limit deletes both.
		{Bucket: RDAPBucket, Description: "RDAP answers: network → registrant organisation or why none", TTL: 31 * 24 * time.Hour},
		// Identifications count for 30 days (ipintel.LearnWindow); a
		// removal holds as long as the identifications that made it.
		{Bucket: IdentitiesBucket, Description: "identifications: <network>.<site>.<visitor id> → e-mail domain", TTL: 30 * 24 * time.Hour},
		{Bucket: LearnedBucket, Description: "learned networks an administrator removed: <network> → domain, by whom", TTL: 30 * 24 * time.Hour},
		{Bucket: ErasedBucket, Description: "erased visitors: <site>.<visitor id> → until when their queued hits are dropped", TTL: max(b.cfg.HitsMaxAge+time.Hour, ErasedKept)},
	}
	for _, kv := range buckets {
		kv.Storage = jetstream.FileStorage
		kv.Replicas = b.cfg.Replicas
		if err := b.ensureBucket(ctx, kv); err != nil {
			return fmt.Errorf("creating bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// Ready reports whether JetStream answers.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.Conn.IsConnected() {
		return errors.New("not connected to NATS")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.JS.Stream(ctx, HitsStream); err != nil {
		return fmt.Errorf("stream %s: %w", HitsStream, err)
	}
	return nil
}

// Close drains the connection and stops an embedded server.
func (b *Bus) Close() {
	if b.endpoint != "" {
		os.Remove(b.endpoint)
	}
	if b.Conn != nil {
		_ = b.Conn.FlushTimeout(2 * time.Second)
		b.Conn.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// natsLogger routes the embedded server's log into slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}
