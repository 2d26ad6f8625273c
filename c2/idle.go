package c2

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// Idle devices: with AutomationConfig.IdleAfter set, the scheduler looks,
// every Rescan, for the devices whose last contact (an acknowledgement or
// a sync request) became older than IdleAfter since it last looked, and
// reports each with an EventDeviceIdle per topic, for event rules (such as
// "rotate the topics of a member idle for 30 days") and the event stream.
// The devices are taken in the order of their last contact from a cursor
// kept in the database: the replica whose transaction moves it reports
// them, so each silence is reported once across replicas and restarts. A
// device never heard from (one that does not acknowledge) is not idle: C2
// cannot tell.

// settingIdleScan is the cursor of the idle-device scan: the last contact
// and id of the last device reported, "unixmicro hexid".
const settingIdleScan = "idle-scan"

// idlePage bounds the devices one tick reports; a full page makes the next
// tick go on.
const idlePage = 1000

// scanIdle reports the devices that became idle, when it is time to look.
func (s *Service) scanIdle(ctx context.Context, now time.Time) error {
	sc := s.sched
	idle := sc.cfg.IdleAfter
	if idle <= 0 {
		return nil
	}
	sc.mu.Lock()
	due := sc.idleMore || sc.idleScan.IsZero() || now.Sub(sc.idleScan) >= sc.cfg.Rescan
	sc.mu.Unlock()
	if !due {
		return nil
	}
	var (
		found []store.SeenClient
		list  []Event
	)
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		found, list, err = s.idleTx(tx, now.Add(-idle))
		return err
	})
	if err != nil {
		return err
	}
	sc.mu.Lock()
	sc.idleScan, sc.idleMore = now, len(found) == idlePage
	sc.mu.Unlock()
	s.emit(list...)
	return nil
}

// idleTx moves the cursor past the next devices last heard from before
// cutoff and returns them with their events.
func (s *Service) idleTx(tx store.Tx, cutoff time.Time) ([]store.SeenClient, []Event, error) {
	ptx, err := policyTx(tx)
	if err != nil {
		return nil, nil, err
	}
	var after store.SeenClient
	if v, err := tx.GetSetting(settingIdleScan); err == nil {
		if after, err = parseIdleCursor(string(v)); err != nil {
			return nil, nil, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	found, err := ptx.IdleClients(after, cutoff, idlePage)
	if err != nil || len(found) == 0 {
		return nil, nil, err
	}
	var list []Event
	for _, c := range found {
		detail := "not heard from since " + c.LastSeen.UTC().Format(time.RFC3339)
		err := forEachTopicOf(tx, c.ID, func(topic string) {
			id := c.ID
			list = append(list, Event{Kind: EventDeviceIdle, Client: &id, Topic: topic, Detail: detail})
		})
		if err != nil {
			return nil, nil, err
		}
	}
	last := found[len(found)-1]
	cursor := strconv.FormatInt(last.LastSeen.UnixMicro(), 10) + " " + last.ID.String()
	return found, list, tx.PutSetting(settingIdleScan, []byte(cursor))
}

// forEachTopicOf calls fn with every topic of a client.
func forEachTopicOf(tx store.Tx, id e4.ID, fn func(topic string)) error {
	after := ""
	for {
		page, err := tx.TopicsOfClient(id, after, MaxLimit)
		if err != nil {
			return err
		}
		for _, topic := range page {
			fn(topic)
		}
		if len(page) < MaxLimit {
			return nil
		}
		after = page[len(page)-1]
	}
}

// parseIdleCursor reads "unixmicro hexid".
func parseIdleCursor(v string) (store.SeenClient, error) {
	a, b, ok := strings.Cut(v, " ")
	micros, err := strconv.ParseInt(a, 10, 64)
	if !ok || err != nil {
		return store.SeenClient{}, fmt.Errorf("c2: setting %s: %q is not \"unixmicro id\"", settingIdleScan, v)
	}
	id, err := e4.ParseID(b)
	if err != nil {
		return store.SeenClient{}, fmt.Errorf("c2: setting %s: %w", settingIdleScan, err)
	}
	return store.SeenClient{ID: id, LastSeen: time.UnixMicro(micros).UTC()}, nil
}
