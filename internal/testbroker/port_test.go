package testbroker

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestPortTakenRecognisesTheServersRefusals: when the port FreePort gave
// is bound by someone else first, each server's start error is one that
// portTaken recognises, so the start is tried again on another port.
func TestPortTakenRecognisesTheServersRefusals(t *testing.T) {
	if portTaken(errors.New("testbroker: rabbitmq did not boot: exit status 69 ... {listen_error,{acceptor,{127,0,0,1},43377},eaddrinuse}")) != true {
		t.Error("RabbitMQ's listen error not recognised")
	}
	if portTaken(errors.New("testbroker: mosquitto did not start: the process exited")) {
		t.Error("an exit without a bind error taken for a port conflict")
	}

	t.Run("mosquitto", func(t *testing.T) {
		RequireBinary(t, MosquittoBinary)
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		m, err := NewMosquitto(t.TempDir(), taken.Addr().(*net.TCPAddr).Port, nil)
		if err == nil {
			m.Stop()
			t.Fatal("Mosquitto started on a port already bound")
		}
		if !portTaken(err) {
			t.Fatalf("not recognised as a port conflict: %v", err)
		}
	})
	t.Run("libcoap", func(t *testing.T) {
		RequireBinary(t, LibcoapServer)
		taken, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		l := &Libcoap{port: taken.LocalAddr().(*net.UDPAddr).Port}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := l.start(ctx); err == nil || !portTaken(err) {
			l.Stop()
			t.Fatalf("start on a bound port: %v, want a port conflict", err)
		}
	})
}
