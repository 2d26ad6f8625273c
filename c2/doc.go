// Package c2 is the E4 command-and-control service: it holds every client
// key and topic key of a deployment and changes the devices' keys by sending
// them protected commands over a pub/sub transport.
//
// The package is the service layer only: it imports neither gRPC nor
// net/http (the APIs are thin layers over it). State lives in a store.Store
// (SQLite or PostgreSQL), keys at rest are sealed by a seal.Keyring, and every
// command is written to an outbox in the same transaction as the state change
// that causes it. A Dispatcher (started by Service.Run) sends outbox entries
// over the transport, retries with backoff until the broker acknowledges
// them, and keeps the commands of each client in order.
//
// A command is stored together with the key that will protect it (both
// sealed), computed when it is enqueued. Because commands of one client are
// delivered in order, the key a device holds when it processes a command is
// exactly the key C2 held when it enqueued it, so SetIDKey and SetC2Key need
// no special casing, and a command is timestamped when it is sent, so one
// that waited out a broker outage is not refused as too old.
package c2
