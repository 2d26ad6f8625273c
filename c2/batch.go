package c2

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// ImportChunk is how many clients an import writes per transaction.
const ImportChunk = 10000

// ImportFormat is the format of a client list.
type ImportFormat string

// The formats ImportClients reads.
const (
	// ImportCSV has a header line naming its columns among name, id, key,
	// password and public_key (keys in hex or base64).
	ImportCSV ImportFormat = "csv"
	// ImportJSON is a JSON array of objects, or one object per line, with
	// the same fields as the CSV columns.
	ImportJSON ImportFormat = "json"
)

// ImportRecord is one client of an import file.
type ImportRecord struct {
	Name      string `json:"name,omitempty"`
	ID        string `json:"id,omitempty"`
	Key       string `json:"key,omitempty"`
	Password  string `json:"password,omitempty"`
	PublicKey string `json:"public_key,omitempty"`

	line int // where the record starts in its file, for errors
}

// ImportResult reports an import.
type ImportResult struct {
	Imported int
	// Generated holds the keys C2 generated or derived, by client id
	// (SK mode, for records without a key), so devices can be provisioned.
	// It holds the keys of committed clients only: after a failed import,
	// exactly those of the Imported clients, so none is lost.
	Generated map[e4.ID][]byte
}

// ImportClients adds every client read from r, ImportChunk per transaction,
// calling progress (if not nil) with the running count after each chunk. A
// bad record stops the import with its line number; chunks already written
// stay written, the error says how many were imported, and the result
// (returned with the error) holds the generated keys of exactly those
// clients, so the caller can save them and resume with the rest of the file.
func (s *Service) ImportClients(ctx context.Context, r io.Reader, format ImportFormat, progress func(done int)) (ImportResult, error) {
	next, err := recordReader(r, format)
	if err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Generated: make(map[e4.ID][]byte)}
	im := importer{svc: s, res: &res, progress: progress}
	for n := 1; ; n++ {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			return res, im.flush(ctx)
		}
		if err != nil {
			return res, fmt.Errorf("%w: record %d: %v (%s)", ErrInvalidArgument, n, err, im.committed())
		}
		c, key, err := s.importedClient(rec)
		if err != nil {
			return res, fmt.Errorf("record %d on line %d: %w (%s)", n, rec.line, err, im.committed())
		}
		if err := im.add(ctx, c, key); err != nil {
			return res, err
		}
	}
}

// importer writes an import's clients a chunk at a time and moves the
// generated keys of a chunk into the result only once it is committed.
type importer struct {
	svc      *Service
	res      *ImportResult
	progress func(done int)
	chunk    []store.Client
	keys     map[e4.ID][]byte // generated keys of chunk
}

func (im *importer) add(ctx context.Context, c store.Client, key []byte) error {
	if im.keys == nil {
		im.chunk = make([]store.Client, 0, ImportChunk)
		im.keys = make(map[e4.ID][]byte)
	}
	im.chunk = append(im.chunk, c)
	if key != nil {
		im.keys[c.ID] = key
	}
	if len(im.chunk) < ImportChunk {
		return nil
	}
	return im.flush(ctx)
}

func (im *importer) flush(ctx context.Context) error {
	if len(im.chunk) == 0 {
		return nil
	}
	err := im.svc.update(ctx, func(tx store.Tx, ev *events) error {
		ev.add(EventClientsImported, nil, "", fmt.Sprintf("%d clients", len(im.chunk)))
		return tx.InsertClients(im.chunk)
	})
	if err != nil {
		return fmt.Errorf("clients %d to %d not imported, none of them written: %w (%s)",
			im.res.Imported+1, im.res.Imported+len(im.chunk), err, im.committed())
	}
	im.res.Imported += len(im.chunk)
	maps.Copy(im.res.Generated, im.keys)
	im.chunk = im.chunk[:0]
	clear(im.keys)
	if im.progress != nil {
		im.progress(im.res.Imported)
	}
	return nil
}

// committed says what an interrupted import left in the database.
func (im *importer) committed() string {
	if im.res.Imported == 0 {
		return "no client imported"
	}
	return fmt.Sprintf("the first %d clients are imported, with their %d generated keys; resume with the records after them",
		im.res.Imported, len(im.res.Generated))
}

func (s *Service) importedClient(rec ImportRecord) (store.Client, []byte, error) {
	n := NewClient{Name: rec.Name, Password: rec.Password}
	var err error
	if rec.ID != "" {
		id, err := e4.ParseID(rec.ID)
		if err != nil {
			return store.Client{}, nil, fmt.Errorf("%w: id: %v", ErrInvalidArgument, err)
		}
		n.ID = &id
	}
	if n.Key, err = decodeKey("key", rec.Key); err != nil {
		return store.Client{}, nil, err
	}
	if n.PublicKey, err = decodeKey("public_key", rec.PublicKey); err != nil {
		return store.Client{}, nil, err
	}
	return s.buildClient(n)
}

// decodeKey reads a key written in hex or base64; "" gives nil.
func decodeKey(field, text string) ([]byte, error) {
	if text == "" {
		return nil, nil
	}
	if b, err := hex.DecodeString(text); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(text); err == nil {
		return b, nil
	}
	return nil, fmt.Errorf("%w: %s is neither hex nor base64", ErrInvalidArgument, field)
}

// recordReader returns a function yielding records until io.EOF.
func recordReader(r io.Reader, format ImportFormat) (func() (ImportRecord, error), error) {
	switch format {
	case ImportCSV:
		return csvRecords(r)
	case ImportJSON:
		return jsonRecords(r), nil
	}
	return nil, fmt.Errorf("%w: import format %q (want csv or json)", ErrInvalidArgument, format)
}

func csvRecords(r io.Reader) (func() (ImportRecord, error), error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: CSV header: %v", ErrInvalidArgument, err)
	}
	columns := make(map[string]int)
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "name", "id", "key", "password", "public_key":
		default:
			return nil, fmt.Errorf("%w: CSV header on line 1: column %q (want name, id, key, password, public_key)", ErrInvalidArgument, clipped(name, 40))
		}
		if first, dup := columns[name]; dup {
			return nil, fmt.Errorf("%w: CSV header on line 1: column %q appears twice (columns %d and %d)", ErrInvalidArgument, name, first+1, i+1)
		}
		columns[name] = i
	}
	field := func(row []string, name string) string {
		if i, ok := columns[name]; ok && i < len(row) {
			return strings.TrimSpace(row[i])
		}
		return ""
	}
	return func() (ImportRecord, error) {
		row, err := cr.Read()
		if err != nil {
			return ImportRecord{}, err // a csv.ParseError names its line
		}
		line, _ := cr.FieldPos(0)
		return ImportRecord{
			Name: field(row, "name"), ID: field(row, "id"), Key: field(row, "key"),
			Password: field(row, "password"), PublicKey: field(row, "public_key"), line: line,
		}, nil
	}, nil
}

// clipped shortens s for an error message: the input it comes from can
// be megabytes, and the message goes back to the caller and to the log.
func clipped(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// jsonRecords reads a JSON array of records or a stream of records (one
// object per line, or any whitespace between objects). Anything else
// between or after the records (a stray "]" or "}", data after the closing
// "]", an array that never closes) is an error naming its line, so no
// record is silently dropped.
func jsonRecords(r io.Reader) func() (ImportRecord, error) {
	lines := &lineCounter{r: r}
	j := &jsonReader{lines: lines, br: bufio.NewReader(lines)}
	return j.next
}

type jsonReader struct {
	lines   *lineCounter
	br      *bufio.Reader
	dec     *json.Decoder
	skipped int64 // bytes consumed before the decoder started
	inArray bool
	done    bool
}

func (j *jsonReader) next() (ImportRecord, error) {
	if j.done {
		return ImportRecord{}, io.EOF
	}
	if j.dec == nil {
		if err := j.start(); err != nil {
			j.done = true
			return ImportRecord{}, err
		}
	}
	if !j.dec.More() {
		j.done = true
		return ImportRecord{}, j.end()
	}
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); err != nil {
		j.done = true
		return ImportRecord{}, j.errorAt(err)
	}
	rec := ImportRecord{line: j.lineAt(j.dec.InputOffset() - int64(len(raw)))}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		j.done = true
		return ImportRecord{}, fmt.Errorf("line %d: %v", rec.line, err)
	}
	return rec, nil
}

// start skips leading space and consumes a "[" if the input starts with one.
func (j *jsonReader) start() error {
	for {
		b, err := j.br.Peek(1)
		if err != nil {
			return err // io.EOF: an empty file holds no record
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = j.br.ReadByte()
			j.skipped++
			continue
		}
		j.dec = json.NewDecoder(j.br)
		if b[0] != '[' {
			return nil
		}
		j.inArray = true
		_, err = j.dec.Token()
		return err
	}
}

// end checks what follows the last record: the closing "]" of an array
// and then nothing, or nothing at all for a stream of objects.
func (j *jsonReader) end() error {
	tok, err := j.dec.Token()
	if j.inArray {
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("line %d: the JSON array is not closed (no ] at the end)", j.lineAt(j.dec.InputOffset()))
		case err != nil:
			return j.errorAt(err)
		case tok != json.Delim(']'):
			return fmt.Errorf("line %d: unexpected %v between records", j.lineAt(j.dec.InputOffset()), tok)
		}
		if tok, err = j.dec.Token(); err == nil {
			return fmt.Errorf("line %d: unexpected %v after the closing ] of the array", j.lineAt(j.dec.InputOffset()), tok)
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case err != nil:
		return j.errorAt(err)
	}
	return fmt.Errorf("line %d: unexpected %v between records", j.lineAt(j.dec.InputOffset()), tok)
}

// errorAt adds the line to a decoding error.
func (j *jsonReader) errorAt(err error) error {
	offset := j.dec.InputOffset()
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		offset = syntax.Offset
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("line %d: the file ends inside a record", j.lines.lineAt(j.lines.read-1))
	}
	return fmt.Errorf("line %d: %v", j.lineAt(offset), err)
}

// lineAt returns the line of a decoder offset.
func (j *jsonReader) lineAt(offset int64) int { return j.lines.lineAt(j.skipped + offset) }

// lineCounter passes a reader through and remembers where its line breaks
// are, so an offset in the stream can be turned into a line number. Offsets
// are asked in increasing order; it forgets the line breaks before the last
// one asked, so it holds only those of the bytes read ahead.
type lineCounter struct {
	r       io.Reader
	read    int64   // bytes passed through
	breaks  []int64 // offsets of the line breaks not yet counted
	counted int     // line breaks before the last offset asked
	lastAsk int64
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			l.breaks = append(l.breaks, l.read+int64(i))
		}
	}
	l.read += int64(n)
	return n, err
}

// lineAt returns the 1-based line of offset. An offset before one asked
// earlier gets the line of that earlier one.
func (l *lineCounter) lineAt(offset int64) int {
	offset = max(offset, l.lastAsk)
	l.lastAsk = offset
	i := 0
	for i < len(l.breaks) && l.breaks[i] < offset {
		i++
	}
	l.counted += i
	l.breaks = append(l.breaks[:0], l.breaks[i:]...)
	return l.counted + 1
}
