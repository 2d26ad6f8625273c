package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// command builds an exec.Cmd for argv in dir, with this process's
// environment plus extraEnv (later entries win).
func command(ctx context.Context, dir string, extraEnv, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	return cmd
}

// runQuiet runs argv and discards its output unless it fails, in which
// case the error carries the output's last lines.
func runQuiet(ctx context.Context, dir string, extraEnv, argv []string) error {
	_, err := runOutput(ctx, dir, extraEnv, argv)
	return err
}

// runOutput runs argv and returns its combined output; on failure the
// error carries the output's last lines.
func runOutput(ctx context.Context, dir string, extraEnv, argv []string) ([]byte, error) {
	var out bytes.Buffer
	cmd := command(ctx, dir, extraEnv, argv)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out.String(), 30))
	}
	return out.Bytes(), nil
}

// runStreaming runs argv with its standard output going to w and its
// standard error kept for the error message.
func runStreaming(ctx context.Context, dir string, extraEnv, argv []string, w io.Writer) error {
	var stderr bytes.Buffer
	cmd := command(ctx, dir, extraEnv, argv)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(stderr.String(), 30))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lineWriter calls onLine for every complete line written to it, and
// onPartial (if set) with the start of a line not finished yet: go test
// prints a benchmark's name when it starts and its figures when it ends.
type lineWriter struct {
	onLine    func(string)
	onPartial func(string)
	pending   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			break
		}
		w.onLine(string(w.pending[:i]))
		w.pending = w.pending[i+1:]
	}
	if len(w.pending) > 0 && w.onPartial != nil {
		w.onPartial(string(w.pending))
	}
	return len(p), nil
}
