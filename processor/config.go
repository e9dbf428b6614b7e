package processor

import (
	"flag"
	"fmt"
	"time"
)

// Config is the processor's configuration.
type Config struct {
	// BatchSize is the most hits inserted at once.
	BatchSize int
	// BatchWait is the longest a partial batch waits for more hits.
	BatchWait time.Duration
	// Consumer is the durable consumer's name; processors sharing it share the work.
	Consumer string
	// AckWait is how long JetStream waits for an ack before redelivering.
	AckWait time.Duration
}

// RegisterFlags registers the processor.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.BatchSize, "processor.batch-size", 5000, "most hits per ClickHouse insert")
	fs.DurationVar(&c.BatchWait, "processor.batch-wait", time.Second, "longest a partial batch waits before it is inserted")
	fs.StringVar(&c.Consumer, "processor.consumer", "processor", "durable JetStream consumer name shared by processors")
	// Short: it is how long the hits of a processor that died wait before
	// another one gets them. A live processor never hits it, however slow
	// its insert, since it reports progress every third of it.
	fs.DurationVar(&c.AckWait, "processor.ack-wait", 30*time.Second, "how long the hits a processor holds wait, after it stopped reporting progress, before JetStream redelivers them")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		return fmt.Errorf("--processor.batch-size: %d is not between 1 and 100000", c.BatchSize)
	}
	if c.BatchWait < 10*time.Millisecond || c.BatchWait > time.Minute {
		return fmt.Errorf("--processor.batch-wait: %v is not between 10ms and 1m", c.BatchWait)
	}
	if c.Consumer == "" || !validConsumerName(c.Consumer) {
		return fmt.Errorf("--processor.consumer: %q must be letters, digits, - or _", c.Consumer)
	}
	if c.AckWait < 10*time.Second {
		return fmt.Errorf("--processor.ack-wait: %v is shorter than 10s", c.AckWait)
	}
	if c.BatchWait > c.AckWait/3 {
		// Messages wait for their batch before the in-progress ticker runs.
		return fmt.Errorf("--processor.batch-wait: %v must be at most a third of --processor.ack-wait (%v)", c.BatchWait, c.AckWait)
	}
	return nil
}

func validConsumerName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
