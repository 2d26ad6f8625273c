package sqlstore_test

import (
	"database/sql"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2/store/internal/sqlstore"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
)

// wantPlans names, for each query, a step its SQLite plan must have: the
// index that keeps it from scanning a table that grows to millions of rows.
var wantPlans = map[string][]string{
	"claim":             {"SCAN o USING COVERING INDEX outbox_claim", "SEARCH p USING COVERING INDEX outbox_client_head (client_id=? AND seq<?)"},
	"markSent":          {"SEARCH outbox USING INDEX sqlite_autoindex_outbox_1 (id=?)"},
	"commandsExist":     {"SEARCH outbox USING COVERING INDEX sqlite_autoindex_outbox_1 (id=?)"},
	"clientsExist":      {"SEARCH clients USING COVERING INDEX sqlite_autoindex_clients_1 (id=?)"},
	"retry":             {"SEARCH outbox USING INDEX sqlite_autoindex_outbox_1 (id=?)"},
	"fail":              {"SEARCH outbox USING INDEX sqlite_autoindex_outbox_1 (id=?)"},
	"getClient":         {"SEARCH clients USING INDEX sqlite_autoindex_clients_1 (id=?)"},
	"listClients":       {"SEARCH clients USING INDEX sqlite_autoindex_clients_1 (id>?)"},
	"listTopics":        {"SEARCH topics USING INDEX sqlite_autoindex_topics_1 (name>?)"},
	"clientsOfTopic":    {"SEARCH memberships USING COVERING INDEX memberships_by_topic (topic=? AND client_id>?)"},
	"topicsOfClient":    {"SEARCH memberships USING PRIMARY KEY (client_id=? AND topic>?)"},
	"countClientsTopic": {"SEARCH memberships USING COVERING INDEX memberships_by_topic (topic=?)"},
	"linkTargets":       {"SEARCH links USING PRIMARY KEY (source=? AND target>?)"},
	"listPending":       {"SEARCH outbox USING INDEX outbox_claim (seq>?)"},
	"listFailed":        {"SEARCH outbox USING INDEX outbox_failed (seq>?)"},
	"listByClient":      {"SEARCH outbox USING INDEX outbox_by_client (client_id=? AND seq>?)"},
	"listByTarget":      {"SEARCH outbox USING INDEX outbox_by_target (target=? AND seq>?)"},
	"listClientPending": {"(client_id=? AND seq>?)"},
	"countPending":      {"USING COVERING INDEX outbox_"},
	"countCurrent":      {"SEARCH memberships USING COVERING INDEX memberships_acked (topic=? AND acked_version>?)"},
	"countBehindAcks":   {"SEARCH m USING COVERING INDEX memberships_acked (topic=? AND acked_version<?)"},
	"topicBehind":       {"SEARCH m USING INDEX memberships_by_topic (topic=? AND client_id>?)"},
	"memberStates":      {"SEARCH m USING PRIMARY KEY (client_id=? AND topic>?)"},
	"setTopicAcked":     {"SEARCH memberships USING PRIMARY KEY (client_id=? AND topic=?)"},
	"listKeyChanges":    {"client_state_key_change"},
	"forgetPrevKeys":    {"SEARCH topics USING INDEX topics_prev_key (rotated_at<?)"},
	"hasPrevKeys":       {"SEARCH topics USING INDEX topics_prev_key (rotated_at<?)"},
	"countByClient":     {"SEARCH outbox USING COVERING INDEX outbox_by_client (client_id=?)"},
}

// TestSQLitePlans: the queries that run on large tables use their indexes,
// so a schema or query change that makes one scan a table fails here
// rather than in production at a million clients.
func TestSQLitePlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plans.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	queries := sqlstore.PlannedQueries(&sqlstore.Dialect{AnonymousPlaceholders: true, InsertOrIgnore: true})
	for name, query := range queries {
		want, ok := wantPlans[name]
		if !ok {
			t.Errorf("no expected plan for %s", name)
			continue
		}
		plan := explain(t, db, query)
		for _, step := range want {
			if !strings.Contains(plan, step) {
				t.Errorf("%s: plan lacks %q:\n%s", name, step, plan)
			}
		}
		if m := regexp.MustCompile(`(?m)^SCAN (clients|topics|memberships|links|outbox)$`).FindString(plan); m != "" {
			t.Errorf("%s: plan scans a whole table (%s):\n%s", name, m, plan)
		}
	}
}

// explain returns the plan of query, one step a line.
func explain(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	args := make([]any, strings.Count(query, "?")+strings.Count(query, "$"))
	for i := range args {
		args[i] = int64(0)
	}
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explaining %s: %v", query, err)
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(steps, "\n")
}
