package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// TestExample builds the program and runs it against a real RabbitMQ, the
// URL given once by flag and once by environment variable, and without a
// URL.
func TestExample(t *testing.T) {
	bin := build(t)
	r := testbroker.StartRabbitMQ(t, nil)

	runs := map[string]struct {
		args []string
		env  []string
	}{
		"flag": {args: []string{"-url", r.AMQPURL()}},
		"env":  {env: []string{"E4_AMQP_URL=" + r.AMQPURL()}},
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			out, err := execute(t, bin, run.args, run.env)
			if err != nil {
				t.Fatalf("the example failed: %v\n%s", err, out)
			}
			for _, want := range []string{
				`dashboard received "21.5 C" on e4kit/example/room1/temp`,
				"plaintext visible: false",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	t.Run("no URL", func(t *testing.T) {
		out, err := execute(t, bin, nil, []string{"E4_AMQP_URL="})
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, "E4_AMQP_URL") {
			t.Errorf("without a URL: %v, output %q; want exit status 2 and a hint", err, out)
		}
	})
}

// build compiles the example into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "amqp-example")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func execute(t *testing.T, bin string, args, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
