package c2

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testutil"
)

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func storedTopic(t *testing.T, env *testEnv, name string) store.Topic {
	t.Helper()
	var tp store.Topic
	err := env.st.View(context.Background(), func(tx store.Tx) (err error) {
		tp, err = tx.GetTopic(name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func monitorKeys(t *testing.T, svc *Service, topic string) MonitorKeys {
	t.Helper()
	return must[MonitorKeys](t)(svc.MonitorTopicKeys(context.Background(), topic))
}

// TestPreviousTopicKeyWindow: a rotation keeps the replaced key in the
// database, sealed as it was, for TopicKeyTransition; after it C2 no
// longer gives it out and the repair scan erases it. Debug logs show no
// key.
func TestPreviousTopicKeyWindow(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{now: time.Now()}
	logs := &testutil.Buffer{}
	env := newTestService(t, e4.SymKey, nil, func(cfg *Config) {
		cfg.Now, cfg.TopicKeyTransition = clk.Now, 5*time.Minute
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	svc := env.svc
	must[TopicInfo](t)(svc.AddTopic(ctx, "plant/a"))
	if k := monitorKeys(t, svc, "plant/a"); k.Previous != nil || storedTopic(t, env, "plant/a").PrevSealedKey != nil {
		t.Fatal("a topic never rotated has a previous key")
	}
	v1 := monitorKeys(t, svc, "plant/a").Current
	sealedV1 := storedTopic(t, env, "plant/a").SealedKey
	must[int](t)(svc.RotateTopic(ctx, "plant/a"))

	tp := storedTopic(t, env, "plant/a")
	if !bytes.Equal(tp.PrevSealedKey, sealedV1) || tp.KeyVersion != 2 {
		t.Fatalf("after the rotation: version %d, previous key stored as the sealed version 1 %v; want 2, true", tp.KeyVersion, bytes.Equal(tp.PrevSealedKey, sealedV1))
	}
	k := monitorKeys(t, svc, "plant/a")
	if !bytes.Equal(k.Previous, v1) || bytes.Equal(k.Current, v1) || k.Version != 2 {
		t.Fatalf("MonitorTopicKeys after the rotation: version %d, previous is version 1's key %v", k.Version, bytes.Equal(k.Previous, v1))
	}
	v2 := k.Current

	clk.advance(4 * time.Minute)
	if err := svc.dispatcher.repairOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if monitorKeys(t, svc, "plant/a").Previous == nil || storedTopic(t, env, "plant/a").PrevSealedKey == nil {
		t.Fatal("the previous key is gone inside its window")
	}
	clk.advance(time.Minute)
	if monitorKeys(t, svc, "plant/a").Previous != nil {
		t.Error("MonitorTopicKeys gives the previous key once its window is over")
	}
	clk.advance(time.Second)
	if storedTopic(t, env, "plant/a").PrevSealedKey == nil {
		t.Fatal("the previous key was erased before a repair scan")
	}
	if err := svc.dispatcher.repairOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if storedTopic(t, env, "plant/a").PrevSealedKey != nil {
		t.Error("the repair scan did not erase the previous key after its window")
	}
	if !strings.Contains(logs.String(), "previous topic keys forgotten") {
		t.Errorf("no debug log of the erasure:\n%s", logs)
	}
	for _, key := range [][]byte{v1, v2, sealedV1} {
		for _, enc := range []string{hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
			if strings.Contains(logs.String(), enc) {
				t.Fatalf("a key is in the logs:\n%s", logs)
			}
		}
	}
}

// TestRotationAfterRemovalKeepsNoPreviousKey: the rotation that follows a
// member removal revokes the replaced key: C2 keeps none, also when the
// topic had one from an earlier rotation.
func TestRotationAfterRemovalKeepsNoPreviousKey(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	svc := env.svc
	must[TopicInfo](t)(svc.AddTopic(ctx, "plant/a"))
	for _, name := range []string{"dev1", "dev2"} {
		must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: name}))
		if err := svc.AddMember(ctx, "plant/a", e4.IDFromName(name)); err != nil {
			t.Fatal(err)
		}
	}
	must[int](t)(svc.RotateTopic(ctx, "plant/a"))
	if storedTopic(t, env, "plant/a").PrevSealedKey == nil {
		t.Fatal("a plain rotation kept no previous key")
	}
	if err := svc.RemoveMember(ctx, "plant/a", e4.IDFromName("dev2")); err != nil {
		t.Fatal(err)
	}
	tp := storedTopic(t, env, "plant/a")
	if tp.KeyVersion != 3 || tp.PrevSealedKey != nil || monitorKeys(t, svc, "plant/a").Previous != nil {
		t.Errorf("after the removal: version %d, previous key kept %v; want 3, false", tp.KeyVersion, tp.PrevSealedKey != nil)
	}
}
