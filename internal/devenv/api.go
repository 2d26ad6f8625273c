package devenv

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/web"
	"github.com/e4-iot/e4kit/internal/bootstrap"
)

// startAPI serves C2's gRPC and HTTPS/JSON API with a self-signed
// certificate and an admin token written into the folder, so the e4 c2
// admin commands work against the dev environment.
func (e *env) startAPI(ctx context.Context, st store.Store, hub *api.EventHub) error {
	tlsDir := filepath.Join(e.opts.Dir, "tls")
	certFile, keyFile, err := bootstrap.EnsureSelfSigned(tlsDir, []string{"127.0.0.1", "localhost"})
	if err != nil {
		return err
	}
	tlsCfg, err := api.ServerTLS{CertFile: certFile, KeyFile: keyFile}.Config()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(e.opts.Dir, "admin.token")
	if _, err := bootstrap.AdminToken(ctx, st, tokenFile); err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		Service: e.svc, Store: st, Events: hub,
		GRPCAddr: freeOr(e.opts.GRPCAddr), HTTPAddr: freeOr(e.opts.HTTPAddr),
		TLS: tlsCfg, Logger: slog.New(slog.DiscardHandler), Version: "e4kit dev",
	})
	if err != nil {
		return err
	}
	gui, err := web.New(web.Config{Service: e.svc, Access: srv.Access(), Events: hub})
	if err != nil {
		return err
	}
	srv.Mount(web.Prefix, gui)
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	context.AfterFunc(runCtx, gui.Close)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	e.closes = append(e.closes, func() error { stop(); return <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		return errors.Join(errors.New("devenv: the C2 API did not start"), err)
	}
	e.out.line("C2 API    gRPC %s, HTTPS/JSON https://%s (OpenAPI at /openapi.json)", srv.GRPCAddr(), srv.HTTPAddr())
	e.out.line("          try: %s c2 client list --server %s --token-file %s --ca-file %s", selfCommand(), srv.GRPCAddr(), tokenFile, certFile)
	return e.printSignInLink(ctx, gui, "https://"+srv.HTTPAddr(), tokenFile)
}

// printSignInLink prints the web interface's address with a one-time
// sign-in link for the admin token (the certificate is self-signed: the
// browser asks to accept it first).
func (e *env) printSignInLink(ctx context.Context, gui *web.Handler, base, tokenFile string) error {
	token, err := bootstrap.ReadTokenFile(tokenFile)
	if err != nil {
		return err
	}
	link, err := gui.SignInLink(ctx, base, token)
	if err != nil {
		return err
	}
	e.out.line("C2 web    %s%s (self-signed certificate); sign in once, within %v, with:", base, web.Prefix, web.SignInCodeTTL)
	e.out.line("          %s", link)
	return nil
}

// freeOr returns addr if it can be listened on now, else the same host
// with port 0 (a free port).
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
		return addr
	}
	host, _, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return addr
	}
	return net.JoinHostPort(host, "0")
}

// selfCommand is how the user can run this program again: "go run
// ./cmd/e4" when it was started with go run (its binary then lives in a
// temporary build folder and no e4 is installed yet), else its own path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/e4"
	}
	if dir, err := exec.LookPath(filepath.Base(exe)); err == nil && dir == exe {
		return filepath.Base(exe) // on the PATH: its short name works
	}
	return exe
}
