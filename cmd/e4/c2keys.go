package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

func newC2PubKeyCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pubkey",
		Short: "Public-key mode: distribute and link the devices' public keys",
		Args:  cobra.NoArgs,
	}
	pair := func(use, short, example, doneMsg string, call func(ctx context.Context, c c2pb.C2Client, a, b string) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Example: example, Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
					if err := call(ctx, s.client, args[0], args[1]); err != nil {
						return err
					}
					return s.done(doneMsg, args[0], args[1])
				})
			},
		}
	}
	links := &cobra.Command{
		Use:     "links CLIENT",
		Short:   "List the clients a client's public key is linked to",
		Example: `  e4 c2 pubkey links camera-7`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListLinks(ctx, &c2pb.ListLinksRequest{Client: args[0], Limit: 10000})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				return s.idTable("LINKED CLIENT ID", res.Clients, "")
			})
		},
	}
	cmd.AddCommand(
		pair("send TARGET SOURCE", "Send SOURCE's public key to TARGET", "  e4 c2 pubkey send screen-1 camera-7",
			"sent the key of %[2]s to %[1]s", func(ctx context.Context, c c2pb.C2Client, target, source string) error {
				_, err := c.SendPubKey(ctx, &c2pb.PubKeyRequest{Target: target, Source: source})
				return err
			}),
		pair("remove TARGET SOURCE", "Make TARGET forget SOURCE's public key", "  e4 c2 pubkey remove screen-1 camera-7",
			"%[1]s forgets the key of %[2]s", func(ctx context.Context, c c2pb.C2Client, target, source string) error {
				_, err := c.RemovePubKey(ctx, &c2pb.PubKeyRequest{Target: target, Source: source})
				return err
			}),
		pair("link SOURCE TARGET", "Send SOURCE's key to TARGET now and whenever it changes", "  e4 c2 pubkey link camera-7 screen-1",
			"%s linked to %s", func(ctx context.Context, c c2pb.C2Client, source, target string) error {
				_, err := c.LinkClients(ctx, &c2pb.LinkRequest{Source: source, Target: target})
				return err
			}),
		pair("unlink SOURCE TARGET", "Remove a link; TARGET forgets SOURCE's key", "  e4 c2 pubkey unlink camera-7 screen-1",
			"%s unlinked from %s", func(ctx context.Context, c c2pb.C2Client, source, target string) error {
				_, err := c.UnlinkClients(ctx, &c2pb.LinkRequest{Source: source, Target: target})
				return err
			}),
		simpleClientCommand(f, "reset CLIENT", "Make a client forget every public key it holds", "  e4 c2 pubkey reset screen-1",
			"%s forgets every public key", func(ctx context.Context, c c2pb.C2Client, ref string) error {
				_, err := c.ResetPubKeys(ctx, &c2pb.ClientRequest{Client: ref})
				return err
			}),
		simpleClientCommand(f, "send-c2-signer CLIENT", "Send C2's signing key to a client (for messages C2 protects)",
			"  e4 c2 pubkey send-c2-signer screen-1", "C2's signing key sent to %s", func(ctx context.Context, c c2pb.C2Client, ref string) error {
				_, err := c.SendC2SignerKey(ctx, &c2pb.ClientRequest{Client: ref})
				return err
			}),
		links)
	return cmd
}

func newC2KeyCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "c2key",
		Short: "Public-key mode: show or rotate C2's own key pair",
		Args:  cobra.NoArgs,
	}
	show := &cobra.Command{
		Use:     "show",
		Short:   "Print C2's public keys (devices are provisioned with the X25519 one)",
		Example: `  e4 c2 c2key show --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				k, err := s.client.GetC2Key(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(k)
				}
				return s.table([]string{"KEY", "VALUE"}, [][]string{
					{"public key (X25519)", hex.EncodeToString(k.PublicKey)},
					{"signer key (Ed25519)", hex.EncodeToString(k.SignerPublicKey)},
					{"signer id", k.SignerId},
				})
			})
		},
	}
	var wait bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give C2 a new key pair and send its public key to every client (admin)",
		Example: `  e4 c2 c2key rotate
  e4 c2 c2key rotate --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSessionFor(cmd, 0, func(ctx context.Context, s *c2Session) error {
				call, cancel := context.WithTimeout(ctx, s.f.timeout)
				res, err := s.client.RotateC2Key(call, &c2pb.Empty{})
				cancel()
				if err != nil {
					return err
				}
				if wait {
					if err := s.waitDelivered(ctx, "c2", res.Commands); err != nil {
						return err
					}
				}
				if s.f.json {
					return s.printJSON(res)
				}
				return s.done("C2 key rotated: %d commands queued", res.Commands)
			})
		},
	}
	rotate.Flags().BoolVar(&wait, "wait", false, "wait until every client's command is delivered, with a progress bar")
	cmd.AddCommand(show, rotate)
	return cmd
}

func newC2MessageCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "message",
		Short: "Protect or unprotect one message under a topic's current key, as a device would",
		Args:  cobra.NoArgs,
	}
	var hexIO bool
	protect := &cobra.Command{
		Use:   "protect TOPIC",
		Short: "Protect stdin for TOPIC and write the protected message to stdout",
		Example: `  echo -n 21.5 | e4 c2 message protect plant/telemetry > message.bin
  echo 32312e35 | e4 c2 message protect plant/telemetry --hex`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := readMessage(cmd, hexIO)
			if err != nil {
				return err
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ProtectMessage(ctx, &c2pb.ProtectMessageRequest{Topic: args[0], Payload: in})
				if err != nil {
					return err
				}
				return writeMessage(s, res.Protected, hexIO)
			})
		},
	}
	unprotect := &cobra.Command{
		Use:   "unprotect TOPIC",
		Short: "Check and decrypt a message read from stdin, seen on TOPIC",
		Example: `  e4 c2 message unprotect plant/telemetry < message.bin
  e4 c2 message unprotect plant/telemetry --hex < message.hex`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := readMessage(cmd, hexIO)
			if err != nil {
				return err
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.UnprotectMessage(ctx, &c2pb.UnprotectMessageRequest{Topic: args[0], Protected: in})
				if err != nil {
					return err
				}
				return writeMessage(s, res.Payload, hexIO)
			})
		},
	}
	cmd.PersistentFlags().BoolVar(&hexIO, "hex", false, "read and write hex instead of raw bytes")
	cmd.AddCommand(protect, unprotect)
	return cmd
}

// maxCLIMessage bounds the stdin of message protect/unprotect.
const maxCLIMessage = 1 << 20

func readMessage(cmd *cobra.Command, hexIO bool) ([]byte, error) {
	in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 2*maxCLIMessage+1))
	if err != nil {
		return nil, err
	}
	if hexIO {
		in, err = hex.DecodeString(strings.Join(strings.Fields(string(in)), ""))
		if err != nil {
			return nil, fmt.Errorf("stdin is not hex: %w", err)
		}
	}
	if len(in) > maxCLIMessage+200 {
		return nil, fmt.Errorf("the message is larger than %d bytes", maxCLIMessage)
	}
	return in, nil
}

func writeMessage(s *c2Session, b []byte, hexIO bool) error {
	if hexIO {
		_, err := fmt.Fprintln(s.out, hex.EncodeToString(b))
		return err
	}
	_, err := s.out.Write(b)
	return err
}
