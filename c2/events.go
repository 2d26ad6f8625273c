package c2

import (
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// EventKind says what an Event reports.
type EventKind string

// The kinds of events the service reports.
const (
	EventClientAdded     EventKind = "client_added"
	EventClientRemoved   EventKind = "client_removed"
	EventTopicAdded      EventKind = "topic_added"
	EventTopicRemoved    EventKind = "topic_removed"
	EventMemberAdded     EventKind = "member_added"
	EventMemberRemoved   EventKind = "member_removed"
	EventTopicRotated    EventKind = "topic_key_rotated"
	EventClientKeyNew    EventKind = "client_key_changed"
	EventC2KeyRotated    EventKind = "c2_key_rotated"
	EventPubKeyChanged   EventKind = "pubkey_changed"
	EventCommandSent     EventKind = "command_sent"
	EventCommandFailed   EventKind = "command_failed"
	EventClientsImported EventKind = "clients_imported"
	// EventCommandAcked: a device acknowledged a command.
	EventCommandAcked EventKind = "command_acked"
	// EventClientStalled: a client's queue is stuck (a command failed
	// DispatchConfig.StallAfter times in a row, or failed for good).
	EventClientStalled EventKind = "client_stalled"
	// EventClientKeyConfirmed: the device holds its new client key (or,
	// for a device that does not acknowledge, its grace is over).
	EventClientKeyConfirmed EventKind = "client_key_confirmed"
	// EventTopicConverged: every member acknowledged the topic's current
	// key (Detail: "version N, M members").
	EventTopicConverged EventKind = "topic_converged"
	// EventDevicesBehind: members still behind a topic's current key
	// DispatchConfig.BehindAfter after its rotation (Detail: the counts).
	EventDevicesBehind EventKind = "devices_behind"
	// EventDeviceSynced: a device's sync request was handled (Detail: the
	// commands queued for it).
	EventDeviceSynced EventKind = "device_synced"
	// EventAckModeSet: the operator declared whether a device acknowledges.
	EventAckModeSet EventKind = "ack_mode_set"
	// EventAnomaly: the monitor saw something wrong on a topic (Detail
	// starts with the anomaly's kind: one of the monitor's results, such
	// as "auth_failed" or "replay"). Event rules may act on it, for
	// example rotate the topic.
	EventAnomaly EventKind = "anomaly"
	// EventPolicyPaused: a rotation policy was paused, by the operator or
	// by the scheduler for too many devices behind (Detail: policy: why).
	EventPolicyPaused EventKind = "policy_paused"
	// EventPolicyResumed: a rotation policy was resumed (Detail: its name).
	EventPolicyResumed EventKind = "policy_resumed"
	// EventRotationStuck: devices were still behind a rotation (automatic
	// or not) AutomationConfig.StuckAfter after it was made (Detail: the
	// counts).
	EventRotationStuck EventKind = "rotation_stuck"
	// EventDeviceIdle: a device C2 had heard from was not heard from for
	// AutomationConfig.IdleAfter; one event per topic it is a member of
	// (Detail: when it was last heard from), once per silence. Event rules
	// may act on it, for example rotate the topics of a device idle for
	// 30 days.
	EventDeviceIdle EventKind = "device_idle"
)

// Event reports a committed change or a settled command. It never carries
// key material.
type Event struct {
	Kind   EventKind
	Time   time.Time
	Client *e4.ID // the client concerned, if any
	Topic  string // the topic concerned, if any
	// Detail is a short human-readable complement (a count, a command
	// kind, a failure reason).
	Detail string
}

// events collects the events of one transaction; they are emitted only
// after it commits.
type events struct {
	list     []Event
	commands int
}

func (ev *events) add(kind EventKind, client *e4.ID, topic, detail string) {
	ev.list = append(ev.list, Event{Kind: kind, Client: client, Topic: topic, Detail: detail})
}

func (s *Service) emit(list ...Event) {
	s.discardSettledKeys(list)
	now := s.now().UTC()
	for _, e := range list {
		s.observe(e, now)
	}
	if s.cfg.OnEvent == nil {
		return
	}
	for _, e := range list {
		if e.Time.IsZero() {
			e.Time = now
		}
		s.cfg.OnEvent(e)
	}
}

// ReportAnomaly emits an EventAnomaly about topic (and client, when the
// sender is known), for components outside the service's transactions such
// as the monitor.
func (s *Service) ReportAnomaly(client *e4.ID, topic, kind, detail string) {
	d := kind
	if detail != "" {
		d += ": " + detail
	}
	s.emit(Event{Kind: EventAnomaly, Client: client, Topic: topic, Detail: d})
}
