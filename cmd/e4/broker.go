package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/transport/coap/broker"
)

func newBrokerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a publish/subscribe broker for tests and small deployments",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBrokerCoAPCommand())
	return cmd
}

type brokerCoAPFlags struct {
	listen, prefix                  string
	psk, pskFile, pskIdentity       string
	certFile, keyFile, clientCAFile string
	verbose                         bool
}

func newBrokerCoAPCommand() *cobra.Command {
	var f brokerCoAPFlags
	cmd := &cobra.Command{
		Use:   "coap [--listen HOST:PORT] [--prefix /ps] [--dtls-psk HEX | --dtls-psk-file FILE | --dtls-cert FILE --dtls-key FILE]",
		Short: "Run the CoAP pub/sub broker (PUT publishes, GET with Observe subscribes)",
		Long: `coap runs the CoAP publish/subscribe broker of package transport/coap/broker
until SIGINT or SIGTERM. Topic "a/b" is the resource <prefix>/a/b: PUT or POST
publishes, GET with Observe subscribes (also before the first publication),
"+" and "#" levels observe several topics. Every observer has its own queue,
so bursts arrive complete and in order; large messages go block-wise.

Plain UDP by default. DTLS with a pre-shared key (--dtls-psk or --dtls-psk-file,
hex; --dtls-psk-identity accepts that identity only) or a certificate
(--dtls-cert, --dtls-key, PEM; --dtls-client-ca requires client certificates).`,
		Example: `  e4 broker coap --listen 127.0.0.1:5683
  e4 broker coap --listen 127.0.0.1:5684 --dtls-psk-file broker.psk --dtls-psk-identity device-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBrokerCoAP(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:5683", "UDP address to listen on")
	fl.StringVar(&f.prefix, "prefix", broker.DefaultPrefix, "path prefix of topics")
	fl.StringVar(&f.psk, "dtls-psk", "", "DTLS pre-shared key, hex (visible to ps: prefer --dtls-psk-file)")
	fl.StringVar(&f.pskFile, "dtls-psk-file", "", "file holding the DTLS pre-shared key, hex")
	fl.StringVar(&f.pskIdentity, "dtls-psk-identity", "", "accept only this PSK identity")
	fl.StringVar(&f.certFile, "dtls-cert", "", "DTLS certificate chain, PEM")
	fl.StringVar(&f.keyFile, "dtls-key", "", "private key of --dtls-cert, PEM")
	fl.StringVar(&f.clientCAFile, "dtls-client-ca", "", "require client certificates signed by these CAs, PEM")
	fl.BoolVar(&f.verbose, "verbose", false, "log diagnostics (never payloads or keys) to stderr")
	return cmd
}

func runBrokerCoAP(cmd *cobra.Command, f *brokerCoAPFlags) error {
	opts := &broker.Options{Prefix: f.prefix}
	dtls, err := brokerDTLS(f)
	if err != nil {
		return err
	}
	opts.DTLS = dtls
	if f.verbose {
		logger := log.New(cmd.ErrOrStderr(), "", log.LstdFlags)
		opts.Logf = logger.Printf
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.Start(f.listen, opts)
	if err != nil {
		return err
	}
	scheme := "coap"
	if dtls != nil {
		scheme = "coaps"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "e4 broker coap: listening on %s://%s, topics under %s\n", scheme, b.Addr(), f.prefix)
	<-ctx.Done()
	fmt.Fprintln(cmd.OutOrStdout(), "e4 broker coap: stopping")
	return b.Close()
}

// brokerDTLS builds the DTLS settings from the flags; nil for plain UDP.
func brokerDTLS(f *brokerCoAPFlags) (*broker.DTLSConfig, error) {
	psk, err := brokerPSK(f)
	if err != nil {
		return nil, err
	}
	hasCert := f.certFile != "" || f.keyFile != ""
	switch {
	case psk != nil && hasCert:
		return nil, errors.New("e4: DTLS takes a PSK or a certificate, not both")
	case psk != nil:
		identity := []byte(f.pskIdentity)
		return &broker.DTLSConfig{PSK: func(id []byte) ([]byte, error) {
			if len(identity) > 0 && subtle.ConstantTimeCompare(id, identity) != 1 {
				return nil, errors.New("e4: unknown PSK identity")
			}
			return psk, nil
		}}, nil
	case hasCert:
		return brokerCertificate(f)
	case f.clientCAFile != "" || f.pskIdentity != "":
		return nil, errors.New("e4: --dtls-client-ca needs --dtls-cert, --dtls-psk-identity needs a PSK")
	}
	return nil, nil
}

func brokerPSK(f *brokerCoAPFlags) ([]byte, error) {
	text := f.psk
	switch {
	case f.psk != "" && f.pskFile != "":
		return nil, errors.New("e4: give --dtls-psk or --dtls-psk-file, not both")
	case f.pskFile != "":
		data, err := os.ReadFile(f.pskFile)
		if err != nil {
			return nil, fmt.Errorf("e4: reading the PSK: %w", err)
		}
		text = string(bytes.TrimSpace(data))
	case f.psk == "":
		return nil, nil
	}
	psk, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(psk) == 0 {
		return nil, errors.New("e4: the DTLS PSK must be non-empty hex")
	}
	return psk, nil
}

func brokerCertificate(f *brokerCoAPFlags) (*broker.DTLSConfig, error) {
	if f.certFile == "" || f.keyFile == "" {
		return nil, errors.New("e4: --dtls-cert and --dtls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("e4: loading the DTLS certificate: %w", err)
	}
	cfg := &broker.DTLSConfig{Certificates: []tls.Certificate{cert}}
	if f.clientCAFile != "" {
		pem, err := os.ReadFile(f.clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("e4: reading the client CAs: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("e4: no certificate in %s", f.clientCAFile)
		}
	}
	return cfg, nil
}
