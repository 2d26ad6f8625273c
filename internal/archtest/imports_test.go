package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this module.
const module = "github.com/e4-iot/e4kit"

// pkg is what go list says of one package of the module.
type pkg struct {
	ImportPath string
	Imports    []string // of its non-test files
	Deps       []string // every package it depends on, transitively (non-test)
}

// layers orders the module's packages: a package may import only packages
// of its own layer or a lower one. cmd -> c2 -> transport -> e4, as
// ARCHITECTURE.md draws it; internal/version and internal/atomicfile are
// leaves anyone may use.
var layers = []struct {
	prefix string
	layer  int
}{
	{"internal/version", 0},
	{"internal/atomicfile", 0}, // the atomic file writer of key, token and state files
	{"internal/testutil", 0},   // helpers for tests: a locked buffer, a test PKI
	{"internal/span", 0},       // the durations of rotation policies, for the CLI and the web interface
	{"internal/apitoken", 3},   // C2 API tokens, minted by c2/api and internal/bootstrap
	{"internal/bootstrap", 4},  // a new C2 deployment's self-signed certificate and first token
	{"e4", 1},
	{"transport", 2},
	{"transport/e4transport", 2}, // the E4 decorator over any Transport
	{"internal/testdevice", 3},   // a test device: e4 over transport/mqtt
	{"c2", 3},
	{"internal/devenv", 4}, // e4 dev: C2, broker and devices in one process
	{"internal/testbroker", 4},
	{"internal/archtest", 5},
	{"cmd", 5},
	{"examples", 5},
	{"benchmarks", 5},
}

// testHelpers are imported by tests only, never by the code they test.
var testHelpers = []string{"internal/testutil", "internal/testbroker", "internal/testdevice", "transport/transporttest", "c2/store/storetest"}

// rule is a constraint on what one part of the module depends on.
type rule struct {
	what   string                // the packages it applies to
	match  func(rel string) bool // rel: path relative to the module
	forbid func(dep string) bool // a dependency it must not have
	direct bool                  // only its own imports count, not theirs
	why    string
}

// under reports whether rel is prefix or below it.
func under(rel, prefix string) bool {
	return rel == prefix || strings.HasPrefix(rel, prefix+"/")
}

var rules = []rule{
	{
		what:  "e4 and its sub-packages",
		match: func(rel string) bool { return under(rel, "e4") },
		forbid: func(dep string) bool {
			return dep == "net" || under(dep, "net/http") || dep == "crypto/tls" ||
				under(dep, module+"/transport") || under(dep, module+"/c2") ||
				(notStandard(dep) && !under(dep, module) && !under(dep, "golang.org/x/crypto") &&
					!under(dep, "golang.org/x/sys") && !under(dep, "filippo.io/edwards25519"))
		},
		why: "the protocol core imports no transport and no network package (ARCHITECTURE.md); " +
			"its only modules are golang.org/x/crypto, golang.org/x/sys and filippo.io/edwards25519",
	},
	{
		what:  "the command layouts",
		match: func(rel string) bool { return rel == "e4/command" },
		forbid: func(dep string) bool {
			return under(dep, module) && !under(dep, module+"/e4/internal/check")
		},
		why: "package e4 imports e4/command (HandleCommand checks commands with it), so e4/command " +
			"is a leaf: it shares only e4/internal/check (key checks and error sentinels) with e4",
	},
	{
		what:  "the c2 service",
		match: func(rel string) bool { return rel == "c2" },
		forbid: func(dep string) bool {
			return under(dep, "google.golang.org/grpc") || under(dep, "net/http") || under(dep, "github.com/grpc-ecosystem") ||
				under(dep, module+"/c2/api") || (strings.HasPrefix(dep, module+"/transport/") && !under(dep, module+"/transport/internal"))
		},
		why: "C2's service imports neither gRPC nor net/http (c2/doc.go), and reaches devices through the " +
			"transport.Transport interface only, not through an adapter",
	},
	{
		what:   "the transport package",
		match:  func(rel string) bool { return rel == "transport" },
		forbid: func(dep string) bool { return dep == "net" || strings.HasPrefix(dep, module+"/transport/") },
		why:    "the interface depends on no adapter and no network package",
	},
	{
		what: "the transport interface and the loopback adapter",
		match: func(rel string) bool {
			return rel == "transport" || under(rel, "transport/loopback") || under(rel, "transport/internal")
		},
		forbid: func(dep string) bool { return under(dep, module+"/e4") || under(dep, module+"/transport/e4transport") },
		why: "an application that moves bytes without E4 links no E4 core: the decorator is " +
			"transport/e4transport's, and the interface and loopback do not depend on it",
	},
	{
		what:  "the E4 decorator",
		match: func(rel string) bool { return rel == "transport/e4transport" },
		forbid: func(dep string) bool {
			return dep == "net" || (strings.HasPrefix(dep, module+"/transport/") && !under(dep, module+"/transport/internal"))
		},
		why: "the decorator wraps any transport.Transport: it depends on no adapter and no network package",
	},
	{
		what: "the adapters and brokers",
		match: func(rel string) bool {
			return strings.HasPrefix(rel, "transport/") && !under(rel, "transport/transporttest")
		},
		forbid: func(dep string) bool {
			return dep == "crypto/aes" || dep == "crypto/cipher" || under(dep, module+"/e4/siv") ||
				under(dep, module+"/e4/internal") || under(dep, "golang.org/x/crypto")
		},
		direct: true,
		why:    "adapters move opaque bytes: the cryptography is the decorator's (e4transport.Protect), not theirs",
	},
}

// notStandard reports a package outside the standard library: its first
// element has a dot (a domain).
func notStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return strings.Contains(first, ".")
}

// listPackages runs go list over the module.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Imports,Deps", module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages in %s, want the whole module", len(pkgs), module)
	}
	return pkgs
}

// layerOf returns the layer of a path relative to the module.
func layerOf(rel string) (int, bool) {
	best, layer := -1, 0
	for _, l := range layers {
		if under(rel, l.prefix) && len(l.prefix) > best {
			best, layer = len(l.prefix), l.layer
		}
	}
	return layer, best >= 0
}

// violations returns what the packages break of the layers, the test
// helpers rule and the rules.
func violations(pkgs []pkg) []string {
	var found []string
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		from, known := layerOf(rel)
		if !known {
			found = append(found, fmt.Sprintf("%s is in no layer of internal/archtest (add it)", rel))
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if to, _ := layerOf(irel); to > from {
				found = append(found, fmt.Sprintf("%s imports %s, a higher layer (cmd -> c2 -> transport -> e4)", rel, irel))
			}
			if slices.ContainsFunc(testHelpers, func(h string) bool { return under(irel, h) }) && !slices.ContainsFunc(testHelpers, func(h string) bool { return under(rel, h) }) {
				found = append(found, fmt.Sprintf("%s imports the test helper %s outside its tests", rel, irel))
			}
		}
		for _, r := range rules {
			if !r.match(rel) {
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, dep := range deps {
				if r.forbid(dep) {
					found = append(found, fmt.Sprintf("%s depends on %s: %s", rel, dep, r.why))
				}
			}
		}
	}
	return found
}

// TestImportDirection: the module's packages import in the intended
// direction and keep the promises of their documentation.
func TestImportDirection(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestViolationsFound: the checks catch each kind of violation, on
// packages made up for the purpose.
func TestViolationsFound(t *testing.T) {
	cases := []struct {
		p    pkg
		want string
	}{
		{pkg{ImportPath: module + "/e4", Deps: []string{"net"}}, "e4 depends on net"},
		{pkg{ImportPath: module + "/e4/store", Deps: []string{"github.com/eclipse/paho.mqtt.golang"}}, "e4/store depends on github.com/eclipse/paho.mqtt.golang"},
		{pkg{ImportPath: module + "/e4", Imports: []string{module + "/transport"}}, "e4 imports transport, a higher layer"},
		{pkg{ImportPath: module + "/transport/mqtt", Imports: []string{module + "/c2"}}, "transport/mqtt imports c2, a higher layer"},
		{pkg{ImportPath: module + "/c2", Deps: []string{"google.golang.org/grpc"}}, "c2 depends on google.golang.org/grpc"},
		{pkg{ImportPath: module + "/c2", Deps: []string{"net/http"}}, "c2 depends on net/http"},
		{pkg{ImportPath: module + "/c2", Deps: []string{module + "/transport/mqtt"}}, "reaches devices through the transport.Transport interface only"},
		{pkg{ImportPath: module + "/transport", Deps: []string{module + "/transport/loopback"}}, "transport depends on " + module + "/transport/loopback"},
		{pkg{ImportPath: module + "/c2/api", Imports: []string{module + "/internal/testbroker"}}, "imports the test helper internal/testbroker outside its tests"},
		{pkg{ImportPath: module + "/newpart"}, "newpart is in no layer"},
		{pkg{ImportPath: module + "/e4/command", Deps: []string{module + "/e4"}}, "e4/command depends on " + module + "/e4:"},
		{pkg{ImportPath: module + "/transport/coap", Imports: []string{"crypto/cipher"}}, "adapters move opaque bytes"},
		{pkg{ImportPath: module + "/transport", Deps: []string{module + "/e4"}}, "transport depends on " + module + "/e4"},
		{pkg{ImportPath: module + "/transport/loopback", Deps: []string{module + "/e4/siv"}}, "links no E4 core"},
		{pkg{ImportPath: module + "/transport/e4transport", Deps: []string{module + "/transport/mqtt"}}, "the decorator wraps any transport.Transport"},
	}
	for _, c := range cases {
		got := violations([]pkg{c.p})
		if !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, c.want) }) {
			t.Errorf("%+v: violations %q, want one saying %q", c.p, got, c.want)
		}
	}
	fine := []pkg{
		{ImportPath: module + "/c2", Imports: []string{module + "/transport", module + "/e4"}, Deps: []string{"net/url", module + "/transport", module + "/transport/internal/notify"}},
		{ImportPath: module + "/transport/mqtt", Imports: []string{module + "/e4", "crypto/tls"}, Deps: []string{"crypto/cipher", module + "/e4/siv"}},
		{ImportPath: module + "/transport/e4transport", Imports: []string{module + "/e4", module + "/transport"}, Deps: []string{module + "/e4/siv", module + "/transport/internal/inbox"}},
		{ImportPath: module + "/transport/loopback", Imports: []string{module + "/transport"}, Deps: []string{module + "/transport", module + "/transport/internal/inbox"}},
		{ImportPath: module + "/e4/command", Imports: []string{module + "/e4/internal/check"}, Deps: []string{module + "/e4/internal/check", "filippo.io/edwards25519"}},
		{ImportPath: module + "/cmd/e4", Imports: []string{module + "/c2/api", module + "/internal/version"}, Deps: []string{"net/http", "google.golang.org/grpc"}},
	}
	if got := violations(fine); len(got) != 0 {
		t.Errorf("violations in a correct module: %q", got)
	}
}
