// Package tlsfiles loads certificate, key and CA files, naming the flags
// in its errors, into the TLS configuration of a listener or a client.
//
// It imports nothing of leadpipe's.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
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

// Client returns the TLS configuration for a connection to a server: the
// CA that signed the server's certificate (empty: the system's roots), and
// a client certificate and key when the server asks for one. flag is the
// flags' prefix, as in "--clickhouse.tls".
func Client(flag, caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s-ca: %w", flag, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s-ca: %s holds no PEM certificate", flag, caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, fmt.Errorf("%s-cert and %s-key: give both, or neither", flag, flag)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s-cert, %s-key: %w", flag, flag, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
