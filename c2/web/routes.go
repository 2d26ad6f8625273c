package web

import (
	"github.com/e4-iot/e4kit/c2/api"
)

// route is one entry of the route table. Every route of the interface is
// here, with the role it needs: guard enforces it, and a POST (the only
// method that changes anything) also needs the session's CSRF token.
type route struct {
	Method string
	Path   string // a net/http pattern path, under Prefix
	// Scope is the role needed; 0 for the public routes (sign-in, static
	// files).
	Scope api.Scope
	// Upload marks a POST that carries a file (multipart, larger bound).
	Upload bool
	handle func(*Handler, *request)
}

// Roles, for the table's readability.
const (
	public  api.Scope = 0
	read              = api.ScopeRead
	operate           = api.ScopeOperate
	admin             = api.ScopeAdmin
)

// routes is the route table.
func (h *Handler) routes() []route {
	return []route{
		{Method: "GET", Path: Prefix + "static/", Scope: public, handle: (*Handler).serveStatic},
		{Method: "GET", Path: Prefix + "signin", Scope: public, handle: (*Handler).signInPage},
		{Method: "POST", Path: Prefix + "signin", Scope: public, handle: (*Handler).signIn},
		{Method: "POST", Path: Prefix + "signout", Scope: read, handle: (*Handler).signOut},

		{Method: "GET", Path: Prefix + "{$}", Scope: read, handle: (*Handler).dashboard},
		{Method: "GET", Path: Prefix + "events/stream", Scope: read, handle: (*Handler).eventStream},

		{Method: "GET", Path: Prefix + "clients", Scope: read, handle: (*Handler).clientList},
		{Method: "POST", Path: Prefix + "clients", Scope: operate, handle: (*Handler).addClient},
		{Method: "GET", Path: Prefix + "client", Scope: read, handle: (*Handler).clientDetail},
		{Method: "POST", Path: Prefix + "client/rekey", Scope: operate, handle: (*Handler).rekeyClient},
		{Method: "POST", Path: Prefix + "client/reset", Scope: operate, handle: (*Handler).resetClient},
		{Method: "POST", Path: Prefix + "client/remove", Scope: operate, handle: (*Handler).removeClient},
		{Method: "POST", Path: Prefix + "client/acknowledges", Scope: operate, handle: (*Handler).setAcknowledges},
		{Method: "POST", Path: Prefix + "clients/import", Scope: operate, Upload: true, handle: (*Handler).startImport},
		{Method: "GET", Path: Prefix + "imports/{job}", Scope: operate, handle: (*Handler).importPage},
		{Method: "GET", Path: Prefix + "imports/{job}/status", Scope: operate, handle: (*Handler).importStatus},
		{Method: "POST", Path: Prefix + "imports/{job}/keys", Scope: operate, handle: (*Handler).importKeys},

		{Method: "GET", Path: Prefix + "topics", Scope: read, handle: (*Handler).topicList},
		{Method: "POST", Path: Prefix + "topics", Scope: operate, handle: (*Handler).addTopic},
		{Method: "GET", Path: Prefix + "topic", Scope: read, handle: (*Handler).topicDetail},
		{Method: "POST", Path: Prefix + "topic/rotate", Scope: operate, handle: (*Handler).rotateTopic},
		{Method: "POST", Path: Prefix + "topic/remove", Scope: operate, handle: (*Handler).removeTopic},
		{Method: "POST", Path: Prefix + "topic/members", Scope: operate, handle: (*Handler).addMember},
		{Method: "POST", Path: Prefix + "topic/members/remove", Scope: operate, handle: (*Handler).removeMember},

		{Method: "GET", Path: Prefix + "pk", Scope: read, handle: (*Handler).pkPage},
		{Method: "POST", Path: Prefix + "pk/link", Scope: operate, handle: (*Handler).pkLink},
		{Method: "POST", Path: Prefix + "pk/unlink", Scope: operate, handle: (*Handler).pkUnlink},
		{Method: "POST", Path: Prefix + "pk/send", Scope: operate, handle: (*Handler).pkSend},
		{Method: "POST", Path: Prefix + "pk/remove", Scope: operate, handle: (*Handler).pkRemove},
		{Method: "POST", Path: Prefix + "pk/reset", Scope: operate, handle: (*Handler).pkReset},
		{Method: "POST", Path: Prefix + "pk/signer", Scope: operate, handle: (*Handler).pkSendSigner},
		{Method: "POST", Path: Prefix + "pk/rotate-c2", Scope: admin, handle: (*Handler).pkRotateC2},

		{Method: "GET", Path: Prefix + "monitor", Scope: read, handle: (*Handler).monitorPage},
		// Automation: changing a policy needs admin, as the API's
		// AddPolicy, PausePolicy, ResumePolicy and RemovePolicy.
		{Method: "GET", Path: Prefix + "policies", Scope: read, handle: (*Handler).policiesPage},
		{Method: "POST", Path: Prefix + "policies", Scope: admin, handle: (*Handler).addPolicy},
		{Method: "POST", Path: Prefix + "policy/pause", Scope: admin, handle: (*Handler).pausePolicy},
		{Method: "POST", Path: Prefix + "policy/resume", Scope: admin, handle: (*Handler).resumePolicy},
		{Method: "POST", Path: Prefix + "policy/remove", Scope: admin, handle: (*Handler).removePolicy},
		{Method: "GET", Path: Prefix + "rotations", Scope: read, handle: (*Handler).rotationsPage},

		{Method: "GET", Path: Prefix + "audit", Scope: admin, handle: (*Handler).auditPage},
		{Method: "GET", Path: Prefix + "tokens", Scope: admin, handle: (*Handler).tokenList},
		{Method: "POST", Path: Prefix + "tokens", Scope: admin, handle: (*Handler).createToken},
		{Method: "POST", Path: Prefix + "tokens/revoke", Scope: admin, handle: (*Handler).revokeToken},
	}
}
