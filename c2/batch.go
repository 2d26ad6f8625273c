package c2

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
}

// ImportResult reports an import.
type ImportResult struct {
	Imported int
	// Generated holds the keys C2 generated or derived, by client id
	// (SK mode, for records without a key), so devices can be provisioned.
	Generated map[e4.ID][]byte
}

// ImportClients adds every client read from r, ImportChunk per transaction,
// calling progress (if not nil) with the running count after each chunk. A
// bad record stops the import with its line number; chunks already written
// stay written, and the error says how many were imported, so the import can
// be resumed with the rest of the file.
func (s *Service) ImportClients(ctx context.Context, r io.Reader, format ImportFormat, progress func(done int)) (ImportResult, error) {
	next, err := recordReader(r, format)
	if err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Generated: make(map[e4.ID][]byte)}
	chunk := make([]store.Client, 0, ImportChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := s.update(ctx, func(tx store.Tx, ev *events) error {
			ev.add(EventClientsImported, nil, "", fmt.Sprintf("%d clients", len(chunk)))
			return tx.InsertClients(chunk)
		})
		if err != nil {
			return fmt.Errorf("after %d clients imported: %w", res.Imported, err)
		}
		res.Imported += len(chunk)
		chunk = chunk[:0]
		if progress != nil {
			progress(res.Imported)
		}
		return nil
	}
	for line := 1; ; line++ {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			return res, flush()
		}
		if err != nil {
			return res, fmt.Errorf("%w: record %d: %v (%d clients imported)", ErrInvalidArgument, line, err, res.Imported)
		}
		c, key, err := s.importedClient(rec)
		if err != nil {
			return res, fmt.Errorf("record %d: %w (%d clients imported)", line, err, res.Imported)
		}
		if key != nil {
			res.Generated[c.ID] = key
		}
		if chunk = append(chunk, c); len(chunk) == ImportChunk {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
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
			columns[name] = i
		default:
			return nil, fmt.Errorf("%w: CSV column %q (want name, id, key, password, public_key)", ErrInvalidArgument, clipped(name, 40))
		}
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
			return ImportRecord{}, err
		}
		return ImportRecord{
			Name: field(row, "name"), ID: field(row, "id"), Key: field(row, "key"),
			Password: field(row, "password"), PublicKey: field(row, "public_key"),
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
// object per line, or any whitespace between objects).
func jsonRecords(r io.Reader) func() (ImportRecord, error) {
	br := bufio.NewReader(r)
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	started := false
	return func() (ImportRecord, error) {
		if !started {
			started = true
			if err := openJSONArray(br, dec); err != nil {
				return ImportRecord{}, err
			}
		}
		if !dec.More() {
			return ImportRecord{}, io.EOF
		}
		var rec ImportRecord
		err := dec.Decode(&rec)
		return rec, err
	}
}

// openJSONArray consumes a leading "[" if the input starts with one.
func openJSONArray(br *bufio.Reader, dec *json.Decoder) error {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.ReadByte()
			continue
		case '[':
			_, err := dec.Token()
			return err
		}
		return nil
	}
}
