package c2

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2/internal/txhook"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// Config configures a Service. Store, Keyring and Mode are required.
type Config struct {
	// Mode is the deployment's crypto mode; it is recorded in the database
	// on first start and a later start with another mode is refused.
	Mode e4.Mode
	// Suite is the deployment's suite of primitives (e4.Suite; nil means
	// e4.V1). Like Mode it is recorded in the database on first start, a
	// later start with another suite is refused, and every device must run
	// the same one: nothing in a message says which suite protected it.
	Suite *e4.Suite
	// Store is the database.
	Store store.Store
	// Keyring seals and opens the keys kept in Store.
	Keyring *seal.Keyring
	// Transport carries commands to devices. It may be nil for a service
	// that only edits state (commands then wait in the outbox).
	Transport transport.Transport

	// KeepTopicKeyOnRemove turns off the default rotation of a topic's key
	// when a member is removed (or the client deleted). Without rotation the
	// removed device keeps reading the topic with the key it has.
	KeepTopicKeyOnRemove bool
	// RotateOnAdd rotates a topic's key before a client joins it, so the
	// newcomer cannot read traffic recorded before it joined.
	RotateOnAdd bool
	// TopicKeyTransition is how long after a rotation C2 keeps the
	// replaced topic key in the database, for the monitor to count
	// messages under it as previous_key (a device lagging) rather than
	// auth_failed; afterwards it is erased. Set it to the devices'
	// key-transition period (default e4.DefaultKeyTransition, 60 minutes,
	// as devices); the monitor's own KeyTransition should match.
	TopicKeyTransition time.Duration
	// AllowGeneratedKeyPairs lets NewClientKeyPair generate a device's key
	// pair in C2 and send it the private key (PK mode), for devices that
	// cannot make their own. Off by default: see NewClientKeyPair.
	AllowGeneratedKeyPairs bool
	// GroupTopics (PK mode) makes the members of every topic exchange
	// their public keys: a client joining a topic is linked both ways with
	// the other members, and unlinked from those it shares no topic with
	// when it leaves, so members accept each other's messages without
	// manual links (see joinGroup).
	GroupTopics bool

	// Dispatch tunes the outbox dispatcher run by Run.
	Dispatch DispatchConfig
	// Automation tunes the rotation scheduler run by Run (see
	// AutomationConfig and the README's "Automatic rotation").
	Automation AutomationConfig
	// OnEvent, if set, is called after each committed change and each
	// command settled by the dispatcher. It must not block for long.
	OnEvent func(Event)
	// Logger receives structured logs; nil discards them. Keys are never
	// logged.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Setting names kept in the store.
const (
	settingMode      = "mode"
	settingSuite     = "suite"
	settingSealCheck = "seal-check"
	settingC2Key     = "c2-key"    // sealed X25519 private key (PK mode)
	settingC2Signer  = "c2-signer" // sealed Ed25519 seed (PK mode)
	// settingC2KeyPrev is the sealed X25519 private key C2 had before its
	// last rotation, and settingC2KeyRotated when (Unix seconds, decimal):
	// devices that missed the SetC2Key still hold the matching public key.
	settingC2KeyPrev    = "c2-key-prev"
	settingC2KeyRotated = "c2-key-rotated-at"
)

// C2SignerName is the name whose e4.IDFromName is the sender id C2 uses when
// it signs a message in public-key mode.
const C2SignerName = "e4kit-c2"

// Service is the C2 service layer. Its methods are safe for concurrent use.
type Service struct {
	cfg  Config
	st   store.Store
	keys *seal.Keyring
	log  *slog.Logger
	now  func() time.Time

	dispatcher *Dispatcher
	sched      *scheduler
	// integrity is the last database integrity check of Health.
	integrity integrityCache

	// pairMu guards pk. Every transaction that may enqueue commands holds
	// it for reading, and RotateC2Key for writing, so no command protected
	// under the old C2 key pair can commit after the rotation did.
	pairMu sync.RWMutex
	pk     *c2KeyPair // nil in SK mode
	prevPK *prevC2Key // nil until C2's key pair was rotated
	cmd    *commandKeyCache

	generated generatedKeys // clients with a generated private key in the outbox

	monitor atomic.Pointer[MonitorSource] // set by SetMonitor
}

// c2KeyPair is C2's own key material in public-key mode.
type c2KeyPair struct {
	private  []byte // X25519
	public   []byte // X25519
	signer   ed25519.PrivateKey
	signerID e4.ID
}

// New opens a service on cfg.Store: it checks that the master key opens the
// database, records or checks the crypto mode, and in public-key mode loads
// (or creates on first start) C2's key pair.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Keyring == nil {
		return nil, fmt.Errorf("%w: Config.Store and Config.Keyring are required", ErrInvalidArgument)
	}
	if cfg.Mode != e4.SymKey && cfg.Mode != e4.PubKey {
		return nil, fmt.Errorf("%w: unknown crypto mode %v", ErrInvalidArgument, cfg.Mode)
	}
	s := &Service{cfg: cfg, st: cfg.Store, keys: cfg.Keyring, log: cfg.Logger, now: cfg.Now, cmd: newCommandKeyCache(),
		sched: newScheduler(cfg.Automation)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if err := checkNoRekey(tx); err != nil {
			return err
		}
		if err := s.checkSuite(tx); err != nil {
			return err
		}
		if err := s.checkMode(tx); err != nil {
			return err
		}
		if err := s.checkMasterKey(tx); err != nil {
			return err
		}
		if cfg.Mode == e4.PubKey {
			return s.loadOrCreateC2Keys(tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cfg.Mode == e4.PubKey {
		if _, err := s.discardGeneratedKeys(ctx, nil); err != nil {
			return nil, err
		}
	}
	s.dispatcher = newDispatcher(s, cfg.Dispatch)
	return s, nil
}

// Mode returns the deployment's crypto mode.
func (s *Service) Mode() e4.Mode { return s.cfg.Mode }

// Suite returns the deployment's suite (e4.V1 unless Config.Suite says
// otherwise); never nil.
func (s *Service) Suite() *e4.Suite {
	if s.cfg.Suite == nil {
		return e4.V1
	}
	return s.cfg.Suite
}

// checkSuite records the suite in a new database and refuses a start with
// another suite than the recorded one. It runs before checkMode, so a
// database with a mode and no suite was created before suites existed,
// and so ran V1.
func (s *Service) checkSuite(tx store.Tx) error {
	want := s.Suite().Name()
	got, err := tx.GetSetting(settingSuite)
	if errors.Is(err, store.ErrNotFound) {
		got = []byte(want)
		if _, modeErr := tx.GetSetting(settingMode); modeErr == nil {
			got = []byte(e4.V1.Name())
		} else if !errors.Is(modeErr, store.ErrNotFound) {
			return modeErr
		}
		if err := tx.PutSetting(settingSuite, got); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("%w: the database was created with suite %q, not %q; C2 and every device must run the same suite",
			ErrInvalidArgument, got, want)
	}
	return nil
}

// Run runs the outbox dispatcher and, unless Automation.Disabled, the
// rotation scheduler until ctx ends; it returns nil after a clean stop.
// Without a transport there is no dispatcher.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if !s.cfg.Automation.Disabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.RunScheduler(ctx)
		}()
	}
	defer wg.Wait()
	if s.cfg.Transport == nil {
		<-ctx.Done()
		return nil
	}
	return s.dispatcher.Run(ctx)
}

// Dispatcher returns the service's outbox dispatcher.
func (s *Service) Dispatcher() *Dispatcher { return s.dispatcher }

func (s *Service) checkMode(tx store.Tx) error {
	want := s.cfg.Mode.String()
	got, err := tx.GetSetting(settingMode)
	if errors.Is(err, store.ErrNotFound) {
		return tx.PutSetting(settingMode, []byte(want))
	}
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("%w: the database was created in %q mode, not %q", ErrInvalidArgument, got, want)
	}
	return nil
}

// checkMasterKey opens a known sealed value so a wrong master key is
// reported at start, not at the first rotation.
func (s *Service) checkMasterKey(tx store.Tx) error {
	sealed, err := tx.GetSetting(settingSealCheck)
	if errors.Is(err, store.ErrNotFound) {
		sealed, err = s.keys.Seal([]byte("e4kit"), "setting/"+settingSealCheck)
		if err != nil {
			return err
		}
		return tx.PutSetting(settingSealCheck, sealed)
	}
	if err != nil {
		return err
	}
	if _, err := s.keys.Open(sealed, "setting/"+settingSealCheck); err != nil {
		return fmt.Errorf("c2: the master key does not open this database: %w", err)
	}
	return nil
}

func (s *Service) loadOrCreateC2Keys(tx store.Tx) error {
	private, err := s.openSetting(tx, settingC2Key)
	if errors.Is(err, store.ErrNotFound) {
		if private, err = newX25519Private(); err != nil {
			return err
		}
		if err := s.putSealedSetting(tx, settingC2Key, private); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	seed, err := s.openSetting(tx, settingC2Signer)
	if errors.Is(err, store.ErrNotFound) {
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return err
		}
		if err := s.putSealedSetting(tx, settingC2Signer, seed); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	pair, err := s.newC2KeyPair(private, seed)
	if err != nil {
		return err
	}
	s.pk = pair // New runs before any other use of s
	s.prevPK, err = s.loadPrevC2Key(tx)
	return err
}

func (s *Service) newC2KeyPair(private, seed []byte) (*c2KeyPair, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("c2: stored signing key has %d bytes", len(seed))
	}
	public, err := x25519Public(private)
	if err != nil {
		return nil, err
	}
	return &c2KeyPair{
		private:  private,
		public:   public,
		signer:   ed25519.NewKeyFromSeed(seed),
		signerID: s.Suite().IDFromName(C2SignerName),
	}, nil
}

func (s *Service) openSetting(tx store.Tx, name string) ([]byte, error) {
	sealed, err := tx.GetSetting(name)
	if err != nil {
		return nil, err
	}
	return s.keys.Open(sealed, "setting/"+name)
}

func (s *Service) putSealedSetting(tx store.Tx, name string, value []byte) error {
	sealed, err := s.keys.Seal(value, "setting/"+name)
	if err != nil {
		return err
	}
	return tx.PutSetting(name, sealed)
}

// c2Keys returns C2's key pair, or ErrWrongMode in SK mode.
func (s *Service) c2Keys() (*c2KeyPair, error) {
	s.pairMu.RLock()
	defer s.pairMu.RUnlock()
	if s.pk == nil {
		return nil, fmt.Errorf("%w: C2 has a key pair only in public-key mode", ErrWrongMode)
	}
	return s.pk, nil
}

// C2PublicKey returns C2's X25519 public key (PK mode), which devices are
// provisioned with.
func (s *Service) C2PublicKey() ([]byte, error) {
	pair, err := s.c2Keys()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), pair.public...), nil
}

// C2SignerPublicKey returns the Ed25519 public key C2 signs messages with
// in public-key mode, and its sender id.
func (s *Service) C2SignerPublicKey() (ed25519.PublicKey, e4.ID, error) {
	pair, err := s.c2Keys()
	if err != nil {
		return nil, e4.ID{}, err
	}
	return pair.signer.Public().(ed25519.PublicKey), pair.signerID, nil
}

// update runs fn in a store transaction and, once it committed, wakes the
// dispatcher and publishes the events fn collected.
func (s *Service) update(ctx context.Context, fn func(tx store.Tx, ev *events) error) error {
	s.pairMu.RLock()
	defer s.pairMu.RUnlock()
	return s.updateLocked(ctx, fn)
}

// updateLocked is update for callers that hold pairMu.
func (s *Service) updateLocked(ctx context.Context, fn func(tx store.Tx, ev *events) error) error {
	var ev events
	err := s.st.Update(ctx, func(tx store.Tx) error {
		ev = events{}
		if err := fn(tx, &ev); err != nil {
			return err
		}
		return txhook.Run(ctx, tx)
	})
	if err != nil {
		return err
	}
	if ev.commands > 0 {
		s.dispatcher.Wake()
	}
	now := s.now().UTC()
	for _, e := range ev.list {
		if e.Kind == EventTopicRotated {
			s.dispatcher.watch.rotate(e.Topic, now)
		}
	}
	s.emit(ev.list...)
	return nil
}

// view runs fn in a read-only store transaction.
func (s *Service) view(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.st.View(ctx, fn)
}
