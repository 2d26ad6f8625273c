package web

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// importJob is a client import running in the background, so that the
// browser can show its progress.
type importJob struct {
	id      string
	owner   string // the token name that started it: only it sees it
	started time.Time

	mu       sync.Mutex
	total    int // records in the file (its lines, less the CSV header)
	done     int
	finished bool
	err      string
	keys     map[e4.ID][]byte // generated keys, until downloaded once
	keysGone bool
}

// importStatus is what the progress page polls.
type importStatus struct {
	Done     int    `json:"done"`
	Total    int    `json:"total"`
	Finished bool   `json:"finished"`
	Error    string `json:"error,omitempty"`
	Keys     int    `json:"keys"`
}

func (j *importJob) status() importStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return importStatus{Done: j.done, Total: j.total, Finished: j.finished, Error: j.err, Keys: len(j.keys)}
}

// maxImportJobs bounds the jobs kept; the oldest finished one goes first.
const maxImportJobs = 16

// imports keeps the import jobs of this process.
type imports struct {
	now  func() time.Time
	mu   sync.Mutex
	jobs map[string]*importJob
}

func newImports(now func() time.Time) *imports {
	return &imports{now: now, jobs: make(map[string]*importJob)}
}

// add registers a job, or fails when maxImportJobs are still running.
func (m *imports) add(j *importJob) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.jobs) >= maxImportJobs {
		var oldest *importJob
		for _, o := range m.jobs {
			o.mu.Lock()
			fin := o.finished
			o.mu.Unlock()
			if fin && (oldest == nil || o.started.Before(oldest.started)) {
				oldest = o
			}
		}
		if oldest == nil {
			return fmt.Errorf("%w: %d imports are running: wait for one to finish", c2.ErrUnavailable, maxImportJobs)
		}
		oldest.mu.Lock()
		clearKeys(oldest.keys)
		oldest.mu.Unlock()
		delete(m.jobs, oldest.id)
	}
	m.jobs[j.id] = j
	return nil
}

func (m *imports) get(id, owner string) *importJob {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil || j.owner != owner {
		return nil
	}
	return j
}

func clearKeys(keys map[e4.ID][]byte) {
	for id, k := range keys {
		clear(k)
		delete(keys, id)
	}
}

// startImport reads the uploaded file and imports it in the background;
// the browser goes to the job's progress page.
func (h *Handler) startImport(req *request) {
	file, hdr, err := req.FormFile("file")
	if err != nil {
		h.failed(req, fmt.Errorf("%w: choose a CSV or JSON file", c2.ErrInvalidArgument))
		return
	}
	defer file.Close()
	data, err := io.ReadAll(file)
	if err != nil {
		h.failed(req, fmt.Errorf("%w: the file could not be read: %v", c2.ErrInvalidArgument, err))
		return
	}
	format := c2.ImportCSV
	if req.PostFormValue("format") == "json" || strings.HasSuffix(strings.ToLower(hdr.Filename), ".json") {
		format = c2.ImportJSON
	}
	j := &importJob{id: randomID()[:22], owner: req.caller().TokenName, started: h.now(), total: countRecords(data, format)}
	if err := h.imports.add(j); err != nil {
		h.failed(req, err)
		return
	}
	ctx, finish := h.cfg.Access.Audited(context.WithoutCancel(req.Context()), req.caller(), "ImportClients", "format="+string(format), req.remote())
	go h.runImport(ctx, finish, j, data, format)
	http.Redirect(req.w, req.Request, Prefix+"imports/"+j.id, http.StatusSeeOther)
}

func (h *Handler) runImport(ctx context.Context, finish func(error) error, j *importJob, data []byte, format c2.ImportFormat) {
	res, err := h.cfg.Service.ImportClients(ctx, bytes.NewReader(data), format, func(done int) {
		j.mu.Lock()
		j.done = done
		j.mu.Unlock()
	})
	err = finish(err)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished, j.done, j.keys = true, res.Imported, res.Generated
	if err != nil {
		j.err = errorText(err)
	}
	// Keys nobody downloads do not stay in memory.
	time.AfterFunc(generatedKeysTTL, func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.keys != nil {
			clearKeys(j.keys)
			j.keys, j.keysGone = nil, true
		}
	})
}

// generatedKeysTTL is how long an import's generated keys wait for their
// download.
const generatedKeysTTL = 30 * time.Minute

// countRecords estimates the records of a file for the progress bar.
func countRecords(data []byte, format c2.ImportFormat) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	if format == c2.ImportCSV && n > 0 {
		n-- // the header
	}
	return n
}

func (h *Handler) job(req *request) *importJob {
	j := h.imports.get(req.PathValue("job"), req.caller().TokenName)
	if j == nil {
		h.renderStatus(req, http.StatusNotFound, "error", "Error", map[string]any{"Message": "no such import", "Code": 404})
	}
	return j
}

// importPage shows a job's progress (the script updates it).
func (h *Handler) importPage(req *request) {
	j := h.job(req)
	if j == nil {
		return
	}
	j.mu.Lock()
	gone := j.keysGone
	j.mu.Unlock()
	h.render(req, "import", "Import", map[string]any{"ID": j.id, "Status": j.status(), "KeysGone": gone})
}

// importStatus answers the progress page's polls.
func (h *Handler) importStatus(req *request) {
	j := h.job(req)
	if j == nil {
		return
	}
	req.w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(req.w).Encode(j.status())
}

// importKeys downloads the keys C2 generated for the imported clients,
// once: they are wiped from memory as they are sent.
func (h *Handler) importKeys(req *request) {
	j := h.job(req)
	if j == nil {
		return
	}
	j.mu.Lock()
	keys := j.keys
	j.keys, j.keysGone = nil, true
	j.mu.Unlock()
	if len(keys) == 0 {
		h.failed(req, fmt.Errorf("%w: the generated keys were downloaded already, or there were none", c2.ErrNotFound))
		return
	}
	defer clearKeys(keys)
	req.w.Header().Set("Content-Type", "text/csv")
	req.w.Header().Set("Content-Disposition", `attachment; filename="generated-keys.csv"`)
	w := csv.NewWriter(req.w)
	_ = w.Write([]string{"id", "key"})
	for id, k := range keys {
		_ = w.Write([]string{id.String(), hex.EncodeToString(k)})
	}
	w.Flush()
}
