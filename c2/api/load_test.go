package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// loadCallers is how many callers run at once in BenchmarkLoad.
const loadCallers = 32

// BenchmarkLoad measures requests per second and latency percentiles with
// 32 concurrent callers, over gRPC and HTTP/JSON, for a read (a page of
// 100 clients out of 1000) and a write (AddClient, generated key), with
// token checks and the audit log on (the rate limit off). SQLite with
// synchronous=FULL: every write is an fsync.
//
//	go test -run '^$' -bench Load -benchtime 4000x ./c2/api/
func BenchmarkLoad(b *testing.B) {
	c := newTestC2(b, options{edit: func(cfg *api.Config) { cfg.RatePerSecond, cfg.FailedAuthPerSecond = -1, -1 }})
	ops := c.token("bench", "operate")
	cl := c2pb.NewC2Client(c.conn())
	var csv bytes.Buffer
	csv.WriteString("name\n")
	for i := range 1000 {
		fmt.Fprintf(&csv, "seed-%d\n", i)
	}
	stream, err := cl.ImportClients(as(ops), &c2pb.ImportClientsRequest{Format: "csv", Data: csv.Bytes()})
	if err != nil {
		b.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			b.Fatal(err)
		}
	}
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: c.clientTL, MaxIdleConnsPerHost: 2 * loadCallers}}
	base := "https://" + c.srv.HTTPAddr()
	var serial atomic.Int64
	httpCall := func(method, path, body string) error {
		req, _ := http.NewRequest(method, base+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+ops)
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	calls := map[string]func() error{
		"grpc/list-clients": func() error {
			_, err := cl.ListClients(as(ops), &c2pb.ListClientsRequest{Limit: 100})
			return err
		},
		"grpc/add-client": func() error {
			_, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: fmt.Sprintf("load-%d", serial.Add(1))})
			return err
		},
		"http/list-clients": func() error { return httpCall("GET", "/v1/clients?limit=100", "") },
		"http/add-client": func() error {
			return httpCall("POST", "/v1/clients", fmt.Sprintf(`{"name":"load-%d"}`, serial.Add(1)))
		},
	}
	for _, name := range []string{"grpc/list-clients", "grpc/add-client", "http/list-clients", "http/add-client"} {
		b.Run(name, func(b *testing.B) { runLoad(b, calls[name]) })
	}
}

// runLoad makes b.N calls from loadCallers goroutines and reports the
// rate and the latency percentiles.
func runLoad(b *testing.B, call func() error) {
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for range loadCallers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := call(); err != nil {
					failed.Store(err)
					return
				}
				latencies[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
