// Package web is C2's web interface: server-rendered pages over the
// c2.Service and the API's access control (tokens, scopes, audit log),
// served by "e4 c2 serve" on its HTTPS listener under /ui/.
//
// Security model: an operator signs in with an API token, which is
// exchanged for a server-side session (a random id in an HttpOnly, Secure,
// SameSite=Strict cookie); the session's role is the token's scope, checked
// for every route from one table (routes.go), and the token is checked
// again on each request, so revoking it ends the session. Every change is
// a POST carrying the session's CSRF token; GET never changes anything.
// Pages carry a strict Content-Security-Policy (no inline script or
// style). No key reaches the browser except a key C2 generated that the
// operator asked for, shown once in the answer to that request.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
)

// Prefix is the path the interface is served under.
const Prefix = "/ui/"

// Defaults of Config.
const (
	DefaultSessionTTL = 8 * time.Hour
	// SignInCodeTTL is how long a sign-in link stays usable.
	SignInCodeTTL = 10 * time.Minute
)

// cookieName is the session cookie; the __Host- prefix makes browsers
// require Secure, Path=/ and no Domain.
const cookieName = "__Host-e4c2-session"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the interface.
type Config struct {
	Service *c2.Service
	// Access is the API server's access control (api.Server.Access).
	Access *api.Access
	// Events is the hub the service publishes to.
	Events *api.EventHub
	// SessionTTL is how long a session lasts (default DefaultSessionTTL,
	// never past its token's expiry).
	SessionTTL time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Handler serves the interface; mount it under Prefix.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	codes    *codes
	failures *failures
	imports  *imports
	pages    map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler
	// recheck is how often a live event stream checks its token again.
	recheck time.Duration

	stopOnce sync.Once
	stopping chan struct{}
}

// New builds the interface.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil || cfg.Access == nil || cfg.Events == nil {
		return nil, errors.New("web: Config.Service, Config.Access and Config.Events are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, now: cfg.Now, stopping: make(chan struct{}), recheck: tokenRecheck}
	h.sessions = newSessions(cfg.SessionTTL, cfg.Now)
	h.codes = &codes{now: cfg.Now, byID: make(map[string]signInCode)}
	h.failures = &failures{now: cfg.Now, byIP: make(map[string]*failureEntry)}
	h.imports = newImports(cfg.Now)
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	h.mux = http.NewServeMux()
	for _, r := range h.routes() {
		h.mux.Handle(r.Method+" "+r.Path, h.guard(r))
	}
	return h, nil
}

// Close ends the live event streams (call it before the HTTP server's
// graceful shutdown, which waits for them).
func (h *Handler) Close() { h.stopOnce.Do(func() { close(h.stopping) }) }

// SignInLink makes a single-use link, valid SignInCodeTTL, that signs a
// browser in with token (which must be valid): base is the listener's
// URL, such as "https://127.0.0.1:8443".
func (h *Handler) SignInLink(ctx context.Context, base, token string) (string, error) {
	c, err := h.cfg.Access.Check(ctx, token)
	if err != nil {
		return "", err
	}
	code := h.codes.add(c, SignInCodeTTL)
	return strings.TrimSuffix(base, "/") + Prefix + "signin?code=" + code, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w)
	h.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the interface's own files: no inline
// script or style, no frames, forms posting only here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func setSecurityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Strict-Transport-Security", "max-age=31536000")
	hd.Set("Cache-Control", "no-store")
}

// request is what a route handler gets: the session (nil on public
// routes) and helpers.
type request struct {
	*http.Request
	w    http.ResponseWriter
	h    *Handler
	sess *session
}

// caller is the signed-in caller.
func (r *request) caller() api.Caller { return r.sess.caller }

// remote is the client's address for the audit log.
func (r *request) remote() string { return r.RemoteAddr }

// audited runs a change under an audit record of action on target and
// returns its error, ready to show.
func (r *request) audited(action, target string, change func(ctx context.Context) error) error {
	ctx, finish := r.h.cfg.Access.Audited(r.Context(), r.caller(), action, target, r.remote())
	return finish(change(ctx))
}

// guard wraps a route: it loads the session, checks the token behind it,
// the role and, for POST, the CSRF token, then calls the handler.
func (h *Handler) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r, w: w, h: h}
		if rt.Scope == 0 {
			rt.handle(h, req)
			return
		}
		req.sess = h.currentSession(r)
		if req.sess == nil {
			h.toSignIn(w, r)
			return
		}
		if err := h.cfg.Access.Recheck(r.Context(), req.sess.caller); err != nil {
			if errors.Is(err, api.ErrTokenRefused) {
				h.sessions.end(req.sess.id)
				h.toSignIn(w, r)
				return
			}
			h.fail(req, http.StatusServiceUnavailable, "tokens cannot be checked now: "+err.Error())
			return
		}
		if !h.cfg.Access.Allow(req.sess.caller) {
			req.w.Header().Set("Retry-After", "1")
			h.fail(req, http.StatusTooManyRequests, "too many requests with this token: slow down")
			return
		}
		if req.sess.caller.Scope < rt.Scope {
			h.fail(req, http.StatusForbidden, fmt.Sprintf("this page needs the %s role; you signed in with a %s token", rt.Scope, req.sess.caller.Scope))
			return
		}
		if r.Method == http.MethodPost {
			if err := h.checkForm(req, rt); err != nil {
				h.fail(req, http.StatusForbidden, err.Error())
				return
			}
		}
		rt.handle(h, req)
	})
}

// maxFormBytes bounds a form; an import file may be larger.
const (
	maxFormBytes   = 1 << 20
	maxImportBytes = 64 << 20
)

// checkForm reads a POST's form (bounded) and checks its CSRF token.
func (h *Handler) checkForm(req *request, rt route) error {
	limit := int64(maxFormBytes)
	if rt.Upload {
		limit = maxImportBytes
	}
	req.Body = http.MaxBytesReader(req.w, req.Body, limit)
	var err error
	if rt.Upload {
		err = req.ParseMultipartForm(8 << 20)
	} else {
		err = req.ParseForm()
	}
	if err != nil {
		return fmt.Errorf("the form could not be read: %v", err)
	}
	if !sameSecret(req.PostFormValue("csrf"), req.sess.csrf) {
		return errors.New("the form's CSRF token is missing or wrong: reload the page and try again")
	}
	return nil
}

func (h *Handler) currentSession(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	return h.sessions.get(c.Value)
}

// toSignIn sends a browser without a session to the sign-in page (a
// POST, whose form is lost, gets 401).
func (h *Handler) toSignIn(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "signed out: sign in again", http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// fail shows an error page.
func (h *Handler) fail(req *request, code int, msg string) {
	h.renderStatus(req, code, "error", "Error", map[string]any{"Message": msg, "Code": code})
}

// hostOf is the host of a host:port address.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
