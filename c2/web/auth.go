package web

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/store"
)

// preCookie holds the sign-in form's CSRF value before there is a
// session (double submit: the form must repeat the cookie).
const preCookie = "__Host-e4c2-signin"

// signInPage shows the sign-in form; with ?code= (a sign-in link) the
// form carries the code and the interface's script submits it: a GET
// never signs in by itself.
func (h *Handler) signInPage(req *request) {
	pre := randomID()
	http.SetCookie(req.w, &http.Cookie{Name: preCookie, Value: pre, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 600})
	code := req.URL.Query().Get("code")
	if len(code) > 100 {
		code = ""
	}
	req.sess = nil
	h.render(req, "signin", "Sign in", map[string]any{"Pre": pre, "Code": code})
}

// signIn exchanges a token, or a sign-in code, for a session.
func (h *Handler) signIn(req *request) {
	req.Body = http.MaxBytesReader(req.w, req.Body, maxFormBytes)
	if err := req.ParseForm(); err != nil {
		h.signInFailed(req, http.StatusBadRequest, "the form could not be read")
		return
	}
	pre, err := req.Cookie(preCookie)
	if err != nil || !sameSecret(pre.Value, req.PostFormValue("pre")) {
		h.signInFailed(req, http.StatusForbidden, "the sign-in form expired: sign in again")
		return
	}
	host := hostOf(req.RemoteAddr)
	if h.failures.blocked(host) {
		h.log.Warn("web: sign-in refused: too many failures", "remote", host)
		req.w.Header().Set("Retry-After", "10")
		h.signInFailed(req, http.StatusTooManyRequests, "too many failed sign-ins from your address: wait a minute")
		return
	}
	caller, how, err := h.authenticate(req)
	if err != nil {
		if !errors.Is(err, api.ErrTokenRefused) {
			h.signInFailed(req, http.StatusServiceUnavailable, "tokens cannot be checked now")
			return
		}
		h.failures.fail(host)
		_ = h.cfg.Access.Record(req.Context(), store.AuditRecord{Actor: "web:anonymous", Action: "SignIn",
			Target: how, Outcome: "Unauthenticated", Detail: err.Error(), Remote: req.RemoteAddr})
		h.signInFailed(req, http.StatusUnauthorized, "sign-in refused: "+status.Convert(err).Message())
		return
	}
	s, ok := h.sessions.create(caller)
	if !ok {
		h.signInFailed(req, http.StatusServiceUnavailable, "too many sessions are open: try later")
		return
	}
	_ = h.cfg.Access.Record(req.Context(), store.AuditRecord{Actor: caller.Actor, Action: "SignIn", Target: how, Outcome: "ok",
		Detail: "web session, role " + caller.Scope.String(), Remote: req.RemoteAddr})
	http.SetCookie(req.w, &http.Cookie{Name: preCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.SetCookie(req.w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: s.expires})
	http.Redirect(req.w, req.Request, Prefix, http.StatusSeeOther)
}

// authenticate checks the form's token or sign-in code; how says which
// for the audit log.
func (h *Handler) authenticate(req *request) (api.Caller, string, error) {
	if code := req.PostFormValue("code"); code != "" {
		c, ok := h.codes.take(code)
		if !ok {
			return api.Caller{}, "code", errors.Join(api.ErrTokenRefused, errors.New("this sign-in link was used already or has expired"))
		}
		// The token may have been revoked since the link was made.
		if err := h.cfg.Access.Recheck(req.Context(), c); err != nil {
			return api.Caller{}, "code", err
		}
		return c, "code", nil
	}
	c, err := h.cfg.Access.Check(req.Context(), req.PostFormValue("token"))
	return c, "token", err
}

func (h *Handler) signInFailed(req *request, code int, msg string) {
	req.sess = nil
	h.renderStatus(req, code, "signin", "Sign in", map[string]any{"Error": msg, "Pre": h.freshPre(req)})
}

// freshPre sets a new pre-session cookie for the form shown again.
func (h *Handler) freshPre(req *request) string {
	pre := randomID()
	http.SetCookie(req.w, &http.Cookie{Name: preCookie, Value: pre, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 600})
	return pre
}

// signOut ends the session.
func (h *Handler) signOut(req *request) {
	h.sessions.end(req.sess.id)
	_ = h.cfg.Access.Record(req.Context(), store.AuditRecord{Actor: req.caller().Actor, Action: "SignOut", Outcome: "ok",
		Detail: "web session", Remote: req.RemoteAddr})
	http.SetCookie(req.w, &http.Cookie{Name: cookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(req.w, req.Request, Prefix+"signin", http.StatusSeeOther)
}

// errorText is the message of an error for people.
func errorText(err error) string {
	return status.Convert(err).Message()
}
