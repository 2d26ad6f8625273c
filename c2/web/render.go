package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/span"
)

// page is what every template gets.
type page struct {
	Title  string
	Caller api.Caller
	CSRF   string
	Flash  string
	Mode   string
	Nav    []navItem
	Data   any
}

type navItem struct {
	Href, Label string
	Active      bool
}

// nav lists the pages a role sees.
func nav(scope api.Scope, mode e4.Mode, current string) []navItem {
	items := []navItem{{Prefix, "Dashboard", false}, {Prefix + "clients", "Clients", false}, {Prefix + "topics", "Topics", false}}
	if mode == e4.PubKey {
		items = append(items, navItem{Prefix + "pk", "Public keys", false})
	}
	items = append(items, navItem{Prefix + "monitor", "Monitor", false}, navItem{Prefix + "policies", "Policies", false},
		navItem{Prefix + "rotations", "Rotations", false})
	if scope >= api.ScopeAdmin {
		items = append(items, navItem{Prefix + "audit", "Audit log", false}, navItem{Prefix + "tokens", "Tokens", false})
	}
	for i := range items {
		items[i].Active = items[i].Href == current
	}
	return items
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"millis": func(ms int64) string {
		if ms == 0 {
			return ""
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05Z")
	},
	"hasPrefix": strings.HasPrefix,
	"pct": func(part, whole int64) int64 {
		if whole <= 0 {
			return 0
		}
		return part * 100 / whole
	},
	// bar is the width, out of 300, of a bar for n against the largest m.
	"bar": func(n, m uint64) uint64 {
		if m == 0 {
			return 0
		}
		return n * 300 / m
	},
	"add":      func(a, b int) int { return a + b },
	"spanText": span.Format,
	"mul":      func(a, b int) int { return a * b },
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template)
	for _, file := range names {
		name := strings.TrimSuffix(path.Base(file), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", file)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a page with status 200 (or the status already chosen by
// fail).
func (h *Handler) render(req *request, name, title string, data any) {
	h.renderStatus(req, http.StatusOK, name, title, data)
}

func (h *Handler) renderStatus(req *request, status int, name, title string, data any) {
	p := page{Title: title, Data: data, Mode: modeName(h.cfg.Service.Mode())}
	if req.sess != nil {
		p.Caller, p.CSRF, p.Flash = req.sess.caller, req.sess.csrf, req.sess.takeFlash()
		p.Nav = nav(req.sess.caller.Scope, h.cfg.Service.Mode(), req.URL.Path)
	}
	t := h.pages[name]
	if t == nil {
		http.Error(req.w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("web: rendering a page", "page", name, "err", err)
		http.Error(req.w, "the page could not be rendered (see the C2 log)", http.StatusInternalServerError)
		return
	}
	req.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	req.w.WriteHeader(status)
	_, _ = req.w.Write(buf.Bytes())
}

func modeName(m e4.Mode) string {
	if m == e4.PubKey {
		return "public-key"
	}
	return "symmetric-key"
}

// done records a message for the next page and redirects there (the
// POST-redirect-GET pattern, so a reload does not repeat the change).
func (h *Handler) done(req *request, to, msg string) {
	req.sess.setFlash(msg)
	http.Redirect(req.w, req.Request, to, http.StatusSeeOther)
}

// failed shows err about a change on an error page.
func (h *Handler) failed(req *request, err error) {
	code := http.StatusBadRequest
	h.renderStatus(req, code, "error", "Error", map[string]any{"Message": errorText(err), "Code": code})
}

// serveStatic serves the embedded files (no folder listing).
func (h *Handler) serveStatic(req *request) {
	if strings.HasSuffix(req.URL.Path, "/") {
		http.NotFound(req.w, req.Request)
		return
	}
	req.w.Header().Set("Cache-Control", "public, max-age=3600")
	h.static.ServeHTTP(req.w, req.Request)
}
