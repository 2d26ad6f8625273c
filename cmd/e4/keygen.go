package main

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/atomicfile"
	"github.com/spf13/cobra"
)

type keygenFlags struct {
	kind, out, passwordFile string
	force                   bool
}

func newKeygenCommand() *cobra.Command {
	var f keygenFlags
	cmd := &cobra.Command{
		Use:   "keygen --type symmetric|ed25519|c2 [--out FILE] [--password-file FILE] [--force]",
		Short: "Generate a key: symmetric, Ed25519 key pair, or C2 X25519 key pair",
		Long: `keygen writes a new key as hex text.

  symmetric  32-byte key for an SK client or a topic
  ed25519    Ed25519 key pair of a PK client: FILE holds the 64-byte private
             key, FILE.pub the public key
  c2         X25519 key pair of C2: FILE and FILE.pub

With --password-file the symmetric or Ed25519 key is derived from the password
in that file (E4 v1: Argon2i, empty salt), so a device can be provisioned from
a passphrase. The password is the file's raw bytes, a final line break
included, as the reference C2 reads it (a warning says when the file ends
with one): write it with printf '%s' PASSWORD > pass.txt. Key files are written atomically with mode 0600, and never over
an existing file unless --force is given. Without --out the key is printed.`,
		Example: `  e4 keygen --type symmetric --out device.key
  printf '%s' 'a long device password' > pass.txt
  e4 keygen --type ed25519 --out signer.key --password-file pass.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeygen(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kind, "type", "symmetric", "symmetric, ed25519 or c2")
	fl.StringVar(&f.out, "out", "", "file for the key (FILE.pub for the public key)")
	fl.StringVar(&f.passwordFile, "password-file", "", "derive the key from the password in this file; "+passwordFileHelp)
	fl.BoolVar(&f.force, "force", false, "overwrite existing key files")
	return cmd
}

func runKeygen(cmd *cobra.Command, f *keygenFlags) error {
	private, public, err := generateKey(f, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.out == "" {
		fmt.Fprintln(out, hex.EncodeToString(private))
		if public != nil {
			fmt.Fprintln(out, "public:", hex.EncodeToString(public))
		}
		return nil
	}
	if err := writeKeyFile(f.out, private, 0o600, f.force); err != nil {
		return err
	}
	if public != nil {
		if err := writeKeyFile(f.out+".pub", public, 0o644, f.force); err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s and %s (public: %x)\n", f.out, f.out+".pub", public)
		return nil
	}
	fmt.Fprintf(out, "wrote %s\n", f.out)
	return nil
}

// generateKey returns the private (or symmetric) key and, for key pairs,
// the public key.
func generateKey(f *keygenFlags, warn io.Writer) (private, public []byte, err error) {
	var password string
	if f.passwordFile != "" {
		if password, err = readE4Password(f.passwordFile, warn); err != nil {
			return nil, nil, err
		}
	}
	switch strings.ToLower(f.kind) {
	case "symmetric", "sym", "sk":
		if password != "" {
			k, err := e4.KeyFromPassword(password)
			return k, nil, err
		}
		k := make([]byte, e4.KeyLen)
		_, err := rand.Read(k)
		return k, nil, err
	case "ed25519", "pk":
		if password != "" {
			priv, err := e4.Ed25519KeyFromPassword(password)
			if err != nil {
				return nil, nil, err
			}
			return priv, priv.Public().(ed25519.PublicKey), nil
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, pub, err
	case "c2", "x25519":
		if password != "" {
			return nil, nil, errors.New("--password-file is for symmetric and ed25519 keys; a C2 key must be random")
		}
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		return priv.Bytes(), priv.PublicKey().Bytes(), nil
	}
	return nil, nil, fmt.Errorf("unknown --type %q: want symmetric, ed25519 or c2", f.kind)
}

// readPassword returns the first line of a file holding a broker password,
// or "" without one. (E4 passwords are read whole by readE4Password.)
func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the password file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimRight(line, "\r"), nil
}

// writeKeyFile writes key as a hex line, atomically, refusing to replace an
// existing file unless force is set.
func writeKeyFile(path string, key []byte, perm fs.FileMode, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists; use --force to overwrite it", path)
		}
	}
	return atomicfile.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), perm)
}
