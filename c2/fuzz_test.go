package c2

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/e4"
)

// FuzzImportRecords feeds arbitrary bytes to the CSV and JSON import
// readers and turns every record into a client as ImportClients does: a bad
// file must give an error, never a panic, and a record accepted must make a
// client whose id is the one its name or id says.
func FuzzImportRecords(f *testing.F) {
	f.Add([]byte("name,key\nd1,"+string(bytes.Repeat([]byte("ab"), 32))+"\nd2,\n"), true)
	f.Add([]byte("id,password\n"+e4.IDFromName("x").String()+",a password of sixteen+\n"), true)
	f.Add([]byte("name\n\"unterminated\n"), true)
	f.Add([]byte(`[{"name":"j1"},{"id":"00","key":"zz"}]`), false)
	f.Add([]byte("{\"name\":\"l1\"}\n{\"name\":\"l2\",\"extra\":1}\n"), false)
	f.Add([]byte(`[{"public_key":"AAAA"}`), false)
	f.Add([]byte("[{\"name\":\"a\"}]\n{\"name\":\"b\"}\n]"), false)
	f.Add([]byte("name,key,name\nx,,y\n"), true)
	master, _ := seal.GenerateKey()
	keys, _ := seal.NewKeyring(master)
	svc := &Service{cfg: Config{Mode: e4.SymKey}, keys: keys, now: time.Now}
	f.Fuzz(func(t *testing.T, data []byte, csv bool) {
		format := ImportJSON
		if csv {
			format = ImportCSV
		}
		next, err := recordReader(bytes.NewReader(data), format)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("header error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		for range 1000 {
			rec, err := next()
			if err != nil {
				return // io.EOF or a syntax error: both end the import
			}
			if len(rec.Password) > 0 {
				continue // Argon2 costs 64 MiB a call: parsing is what is fuzzed here
			}
			c, _, err := svc.importedClient(rec)
			if err != nil {
				continue
			}
			if rec.Name != "" && c.ID != e4.IDFromName(rec.Name) {
				t.Fatalf("client %q got id %s", rec.Name, c.ID)
			}
		}
	})
}
