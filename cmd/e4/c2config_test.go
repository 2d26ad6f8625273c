package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
)

// updateDocs rewrites docs/config.md and docs/c2.sample.yaml from the code:
// go test ./cmd/e4 -run TestConfigReference -update
var updateDocs = flag.Bool("update", false, "rewrite docs/config.md and docs/c2.sample.yaml")

// keyDoc documents one configuration key: what it does, the flag of "e4
// c2 serve" that overrides it, and its default where the code computes it
// elsewhere than in serveConfig.setDefaults and c2.DefaultDispatchConfig.
type keyDoc struct {
	doc, flag, def string
}

// configDocs documents every key of serveConfig; TestConfigReference fails
// when a key has no entry here or an entry names no key.
var configDocs = map[string]keyDoc{
	"mode":                           {doc: "`sk` (symmetric keys) or `pk` (public keys); recorded on the first start, another mode is refused later", flag: "--mode"},
	"suite":                          {doc: "`v1` or `fast` (PROTOCOL-EXTENSIONS.md); recorded on the first start like the mode; every device must run the same", flag: "--suite", def: "v1"},
	"data_dir":                       {doc: "folder of the default database, master key, development certificate and admin token", flag: "--data-dir"},
	"store.driver":                   {doc: "`sqlite` or `postgres`", flag: "--store"},
	"store.path":                     {doc: "the SQLite file", flag: "--db", def: "<data_dir>/c2.db"},
	"store.dsn":                      {doc: "PostgreSQL connection string (prefer the variable: it may hold a password)", flag: "--dsn"},
	"master_key.file":                {doc: "hex master key file, created with mode 0600 on the first start (unless env or a passphrase is set)", flag: "--master-key-file", def: "<data_dir>/master.key"},
	"master_key.env":                 {doc: "name of an environment variable holding the master key, hex", flag: "--master-key-env"},
	"master_key.passphrase_file":     {doc: "derive the master key from the passphrase in this file (Argon2id, salt kept in the database)", flag: "--passphrase-file"},
	"master_key.passphrase_env":      {doc: "name of an environment variable holding that passphrase"},
	"transport.url":                  {doc: "the broker: a URL of transport/dial (mqtt, mqtts, ws, amqp, amqps, coap, coaps), `mqtt`, `amqp` or `coap` for that broker on localhost, or `none` (commands wait in the outbox)", flag: "--transport", def: "none"},
	"transport.username":             {doc: "broker username (replaces the URL's)", flag: "--transport-username"},
	"transport.password":             {doc: "broker password (never on the command line)"},
	"transport.password_file":        {doc: "file holding the broker password", flag: "--transport-password-file"},
	"transport.ca_file":              {doc: "PEM CA of the broker's certificate (secure schemes)", flag: "--transport-ca-file"},
	"transport.cert_file":            {doc: "client certificate for the broker, PEM (mutual TLS)"},
	"transport.key_file":             {doc: "key of transport.cert_file"},
	"transport.server_name":          {doc: "name expected in the broker's certificate", def: "the URL's host"},
	"transport.insecure_skip_verify": {doc: "do not check the broker's certificate (tests only)"},
	"transport.client_id":            {doc: "MQTT client id", def: "a random one"},
	"transport.psk_file":             {doc: "CoAP over DTLS: the pre-shared key, hex"},
	"transport.psk_identity":         {doc: "CoAP over DTLS: the identity of that key"},
	"grpc.addr":                      {doc: "gRPC listen address", flag: "--grpc-addr"},
	"http.addr":                      {doc: "HTTPS/JSON listen address", flag: "--http-addr"},
	"tls.cert_file":                  {doc: "server certificate, PEM", flag: "--tls-cert", def: "a self-signed one in <data_dir>/tls"},
	"tls.key_file":                   {doc: "key of tls.cert_file", flag: "--tls-key"},
	"tls.hosts":                      {doc: "extra names of the self-signed certificate (comma-separated in the variable)"},
	"tls.client_ca_file":             {doc: "require client certificates signed by this PEM CA (mutual TLS)", flag: "--client-ca"},
	"tls.cert_scopes":                {doc: "client certificate common name to scope (read, operate, admin); needs tls.client_ca_file; file only"},
	"tls.disabled":                   {doc: "serve without TLS, behind a TLS-terminating proxy"},
	"limits.max_request_bytes":       {doc: "largest request body", def: fmt.Sprint(api.DefaultMaxRequestBytes)},
	"limits.rate_per_second":         {doc: "calls per second allowed to each token (negative: no limit)", flag: "--rate", def: fmt.Sprint(api.DefaultRatePerSecond)},
	"limits.burst":                   {doc: "calls a token may make at once above the rate", flag: "--burst", def: fmt.Sprint(api.DefaultBurst)},
	"limits.max_in_flight_bytes":     {doc: "request bytes being received at once; beyond, 429 / ResourceExhausted", def: "4 × max_request_bytes"},
	"limits.body_read_timeout":       {doc: "time a body has to arrive once its headers are in (408 / DeadlineExceeded)", def: api.DefaultBodyReadTimeout.String()},
	"limits.failed_auth_per_second":  {doc: "failed authentications budgeted per address and second (negative: off)", def: fmt.Sprint(api.DefaultFailedAuthPerSecond)},
	"limits.failed_auth_burst":       {doc: "failed authentications an address may make at once", def: fmt.Sprint(api.DefaultFailedAuthBurst)},
	"c2.keep_topic_key_on_remove":    {doc: "do not rotate a topic's key when a member leaves (secrecy by default rotates it)"},
	"c2.rotate_on_add":               {doc: "rotate a topic's key before a client joins, so it cannot read traffic recorded earlier"},
	"c2.await_ack":                   {doc: "a device that acknowledges and is still behind this long after its key was sent gets it again (negative: never)", flag: "--await-ack"},
	"c2.max_attempts":                {doc: "the retry budget of a command"},
	"c2.allow_generated_key_pairs":   {doc: "pk mode: let `e4 c2 client newkey --generate-key-pair` send a device a key pair C2 made (weaker)"},
	"c2.resend_every":                {doc: "resend the current keys to devices that do not acknowledge, on this schedule (0: never)", flag: "--resend-every"},
	"c2.behind_after":                {doc: "report members still behind this long after a rotation (event devices_behind)", flag: "--behind-after"},
	"c2.stall_after":                 {doc: "failed publishes in a row after which a client is reported stalled"},
	"c2.repair_interval":             {doc: "how often the state is scanned for repairs and reports"},
	"c2.command_lead":                {doc: "how far ahead of the clock one client's strictly increasing command timestamps may run (negative: never ahead)"},
	"c2.client_key_grace":            {doc: "how long a device that does not acknowledge also gets commands under its previous client key"},
	"c2.catch_up.sync_rate":          {doc: "sync requests answered per second", flag: "--catch-up-rate"},
	"c2.catch_up.sync_burst":         {doc: "sync requests answered at once above the rate"},
	"c2.catch_up.sync_queue":         {doc: "sync requests that may wait; more are dropped (the device asks again)"},
	"c2.catch_up.command_rate":       {doc: "commands per second that catch-up and repairs queue", flag: "--catch-up-command-rate"},
	"c2.catch_up.command_burst":      {doc: "commands queued at once above that rate"},
	"bootstrap_token_file":           {doc: "where the first admin API token is written on the first start", flag: "--bootstrap-token-file", def: "<data_dir>/admin.token"},
	"event_buffer":                   {doc: "events kept in memory for streams to resume from", def: fmt.Sprint(api.DefaultEventBuffer)},
	"log.level":                      {doc: "`debug`, `info`, `warn` or `error`", flag: "--log-level"},
	"c2.automation.disabled":         {doc: "this replica runs no rotation scheduler (another replica does)"},
	"c2.automation.budget":           {doc: "commands per second the automatic rotations of every replica together may queue", def: "1000"},
	"c2.automation.coalesce_leaves":  {doc: "rotate a topic at most once per this window after member removals (0: at once)"},
	"c2.automation.stuck_after":      {doc: "members still behind this long after an automatic rotation make it stuck", def: "1h"},
	"c2.automation.tick":             {doc: "how often the scheduler looks for due keys", def: "1s"},
	"c2.automation.lease":            {doc: "how long a replica holds a schedule row it claimed", def: "1m"},
	"c2.automation.idle_after":       {doc: "report a device_idle event for each topic of a device not heard from this long, for event rules (0: never)"},
	"metrics.addr":                   {doc: "plain HTTP listener of /metrics, /healthz and /readyz without credentials (bind it to loopback or a private network); the API's listener serves them too, /metrics with a token", flag: "--metrics-addr"},
	"metrics.ready_interval":         {doc: "how often the database and the broker are checked for /readyz and the gRPC health status", def: "5s"},
	"metrics.ready_timeout":          {doc: "the bound of each readiness check", def: "2s"},
	"monitor.enabled":                {doc: "watch the messages on C2's topics and count anomalies (needs a transport)", flag: "--monitor"},
	"monitor.topics":                 {doc: "topic filters the monitor watches (default `#`: every topic C2 manages)", flag: "--monitor-topics"},
	"log.format":                     {doc: "`json` or `text`", flag: "--log-format"},
	"pk.group_topics":                {doc: "pk mode: the members of each topic exchange their public keys as they join and leave"},
}

// defaultValue returns the value a key takes when the configuration leaves
// it empty, as the code computes it: serveConfig.setDefaults, or the
// dispatcher's defaults for the c2 section (same field names); the zero
// value otherwise.
func defaultValue(k configKey) reflect.Value {
	var cfg serveConfig
	cfg.setDefaults()
	v := reflect.ValueOf(cfg).FieldByIndex(k.index)
	if !v.IsZero() || !strings.HasPrefix(k.path, "c2.") {
		return v
	}
	d := reflect.ValueOf(c2.DispatchConfig{}.WithDefaults())
	t := reflect.TypeFor[serveConfig]()
	for n := 2; n <= len(k.index); n++ { // the names below serveConfig.C2
		if d = d.FieldByName(t.FieldByIndex(k.index[:n]).Name); !d.IsValid() {
			return v // a setting of c2.Config, not of the dispatcher
		}
	}
	return d
}

// formatValue writes a value as YAML would read it back.
func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		out, _ := yaml.Marshal(v.String())
		return strings.TrimSpace(string(out))
	case v.Kind() == reflect.Slice:
		return "[]"
	case v.Kind() == reflect.Map:
		return "{}"
	}
	return fmt.Sprint(v.Interface())
}

// typeName names the type of a key for the reference.
func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "map"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	}
	return t.Kind().String()
}

// shownDefault is the default of a key as the reference shows it.
func shownDefault(k configKey) string {
	v := defaultValue(k)
	switch {
	case !v.IsZero() && !strings.Contains(configDocs[k.path].def, "<data_dir>"):
		return "`" + formatValue(v) + "`"
	case configDocs[k.path].def != "":
		return configDocs[k.path].def
	case v.Kind() == reflect.Bool:
		return "`false`"
	}
	return "none"
}

// envName is a key's variable, or why it has none.
func envName(k configKey) string {
	if k.field.Type.Kind() == reflect.Map {
		return "(file only)"
	}
	return "`" + k.env + "`"
}

// configReference renders docs/config.md.
func configReference() string {
	var b strings.Builder
	b.WriteString(`# Configuration of ` + "`e4 c2 serve`" + `

Generated from the code (the ` + "`serveConfig`" + ` struct of cmd/e4/c2serve.go, its defaults
and the dispatcher's) by ` + "`go test ./cmd/e4 -run TestConfigReference -update`" + `;
` + "`TestConfigReference`" + ` fails when this file, ` + "`docs/c2.sample.yaml`" + ` and the code disagree.

` + "`e4 c2 serve --config FILE`" + ` (and ` + "`e4 c2 rekey --config FILE`" + `, which reads the same file)
takes a YAML file; then ` + "`E4_C2_*`" + ` environment variables override it, named after the
YAML path in capitals joined by ` + "`_`" + ` (lists take commas); then flags override both.
A key the file does not know is an error that names the line, the closest key and the
valid keys at that place. A commented file with every key: [c2.sample.yaml](c2.sample.yaml).

| key | type | default | environment variable | flag | meaning |
|---|---|---|---|---|---|
`)
	for _, k := range configKeys() {
		d := configDocs[k.path]
		flagText := ""
		if d.flag != "" {
			flagText = "`" + d.flag + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", k.path, typeName(k.field.Type), shownDefault(k), envName(k), flagText, d.doc)
	}
	return b.String()
}

// configSample renders docs/c2.sample.yaml: every key commented out with
// its default ("#key: value"), under prose lines ("# ...").
func configSample() string {
	var b strings.Builder
	b.WriteString(`# Configuration of e4 c2 serve (--config FILE): every key, commented out, with
# its default. Generated by go test ./cmd/e4 -run TestConfigReference -update;
# docs/config.md explains each key. Lines "#key: value" are settings: remove
# the "#" to set one. E4_C2_* variables and flags override this file.
`)
	var section []string
	for _, k := range configKeys() {
		parts := strings.Split(k.path, ".")
		common := 0
		for common < len(section) && common < len(parts)-1 && section[common] == parts[common] {
			common++
		}
		for i := common; i < len(parts)-1; i++ {
			fmt.Fprintf(&b, "\n%s%s:\n", strings.Repeat("  ", i), parts[i])
		}
		section = parts[:len(parts)-1]
		indent := strings.Repeat("  ", len(parts)-1)
		d := configDocs[k.path]
		fmt.Fprintf(&b, "%s# %s (default: %s)\n", indent, strings.ReplaceAll(d.doc, "`", ""), strings.ReplaceAll(shownDefault(k), "`", ""))
		fmt.Fprintf(&b, "%s#%s: %s\n", indent, parts[len(parts)-1], formatValue(defaultValue(k)))
	}
	return b.String()
}

// checkGenerated compares a generated file with the repository's copy, or
// rewrites it with -update.
func checkGenerated(t *testing.T, path, want string) {
	t.Helper()
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s is not what the code generates (%v): run go test ./cmd/e4 -run TestConfigReference -update", path, err)
	}
}

// TestConfigReference: every key of the configuration is documented, with
// a flag that exists, and docs/config.md and docs/c2.sample.yaml are what
// the code generates.
func TestConfigReference(t *testing.T) {
	serve := newC2ServeCommand()
	keys := make(map[string]bool)
	for _, k := range configKeys() {
		keys[k.path] = true
		d, ok := configDocs[k.path]
		switch {
		case !ok || d.doc == "":
			t.Errorf("configuration key %s is not documented in configDocs", k.path)
		case d.flag != "" && serve.Flags().Lookup(strings.TrimPrefix(d.flag, "--")) == nil:
			t.Errorf("configDocs gives %s the flag %s, which e4 c2 serve does not have", k.path, d.flag)
		}
	}
	for path := range configDocs {
		if !keys[path] {
			t.Errorf("configDocs documents %s, which is not a configuration key", path)
		}
	}
	checkGenerated(t, filepath.Join("..", "..", "docs", "config.md"), configReference())
	checkGenerated(t, filepath.Join("..", "..", "docs", "c2.sample.yaml"), configSample())
}

// settingLine is a commented-out setting of the sample.
var settingLine = regexp.MustCompile(`(?m)^(\s*)#([a-z0-9_]+:)`)

// TestConfigSampleLoads: the sample loads as it is, and with every setting
// uncommented it still loads, each key taking the value the sample shows,
// and runs the same C2 as no configuration at all.
func TestConfigSampleLoads(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "c2.sample.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	asIs, all := filepath.Join(dir, "as-is.yaml"), filepath.Join(dir, "all.yaml")
	uncommented := settingLine.ReplaceAll(raw, []byte("$1$2"))
	if bytes.Equal(uncommented, raw) {
		t.Fatal("the sample has no commented-out setting")
	}
	if err := os.WriteFile(asIs, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(all, uncommented, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadServeConfig(asIs, nil); err != nil {
		t.Fatalf("the sample as it is: %v", err)
	}
	cfg, err := loadServeConfig(all, nil)
	if err != nil {
		t.Fatalf("the sample with every setting uncommented: %v", err)
	}
	var none serveConfig
	none.setDefaults()
	cfg.setDefaults()
	for _, k := range configKeys() {
		got := reflect.ValueOf(*cfg).FieldByIndex(k.index)
		if want := formatValue(defaultValue(k)); formatValue(got) != want {
			t.Errorf("%s: the sample sets %s, the default is %s", k.path, formatValue(got), want)
		}
	}
	got, want := cfg.dispatchConfig(), none.dispatchConfig()
	got.Owner, want.Owner = "c2", "c2"
	if !reflect.DeepEqual(got.WithDefaults(), want.WithDefaults()) {
		t.Error("the sample's c2 section gives another dispatcher configuration than the defaults")
	}
}

// TestConfigUnknownKey: a mistyped key is refused with its line, the key it
// was probably meant to be and the valid keys at its place, at the top
// level and in a section.
func TestConfigUnknownKey(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"mode: sk\ntransprt:\n  url: none\n", `line 2: unknown key "transprt" at the top level; did you mean "transport"? (the keys at the top level are: mode, suite, data_dir, store,`},
		{"transport:\n  ulr: mqtt://127.0.0.1:1883\n", `line 2: unknown key "ulr" in transport; did you mean "url"? (the keys in transport are: url, username,`},
		{"c2:\n  catch_up:\n    sync_rat: 20\n", `line 3: unknown key "sync_rat" in c2.catch_up; did you mean "sync_rate"?`},
		{"limits:\n  zzz: 1\n", `line 2: unknown key "zzz" in limits (the keys in limits are: max_request_bytes,`},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "c2.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadServeConfig(path, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v, want an error naming %s and saying %q", c.yaml, err, path, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "main.serveConfig") {
			t.Errorf("%q: the error names the Go type: %v", c.yaml, err)
		}
	}
}
