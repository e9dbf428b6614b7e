// Package tlsfiles loads a listener's certificate and key files, naming
// the flags in its errors, into a TLS configuration for that listener.
package tlsfiles

import (
	"crypto/tls"
	"fmt"
)

// Load returns the TLS configuration for a listener given the paths of its
// certificate chain and key (PEM), or nil when both are empty (plain
// HTTP). flag is the flags' prefix, as in "--api.tls".
func Load(flag, certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%s-cert and %s-key: give both, or neither", flag, flag)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s-cert, %s-key: %w", flag, flag, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}
