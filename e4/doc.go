// Package e4 implements the E4 end-to-end protocol (version 1) for
// publish/subscribe messaging, byte for byte as deployed E4 devices and C2
// servers speak it.
//
// A [Client] is one device. It holds a key per topic: [Client.Protect]
// turns a payload into the bytes to publish and [Client.Unprotect] checks
// and decrypts what arrives, so the broker only ever carries ciphertext.
// The keys come from a command-and-control server (C2) as commands sent to
// the client's control topic ([ControlTopic], "e4/" + hex id), which
// Unprotect recognises and applies, or from [Client.SetTopicKey] for
// deployments without C2.
//
// Two modes exist. In symmetric-key mode ([NewSymKeyClient]) a message is
//
//	timestamp (8, little-endian Unix seconds) | SIV (16) | ciphertext
//
// protected with AES-SIV (RFC 5297, package siv) under the topic key with
// the timestamp as associated data. In public-key mode ([NewPubKeyClient])
// it also carries the sender's id and an Ed25519 signature over everything
// before it:
//
//	timestamp (8) | sender id (16) | SIV (16) | ciphertext | signature (64)
//
// Commands from C2 are protected like SK messages under the command key:
// the client key in SK mode, SHA3-256 of an X25519 shared secret between the
// client's Ed25519 key and C2's X25519 key in PK mode. The commands
// themselves (their codes, byte layouts and builders) are package
// [github.com/e4-iot/e4kit/e4/command], which C2 uses to build them and
// [Client.HandleCommand] to check them. C2 protects them with
// [Suite.ProtectCommand] under the key [Suite.C2CommandKey] gives in PK
// mode, so that C2 and devices share one implementation.
//
// Beyond the reference implementation, and without changing the wire
// format, a Client refuses replayed messages and commands, refuses a
// command not newer than the last one applied to the same item (topic,
// sender, own key, C2 key, resets; saved with the state, so it holds across
// restarts), checks every length
// exactly, refuses invalid keys, can persist its state atomically through a
// [Store], and is safe for concurrent use. Errors are sentinels for
// [errors.Is]; every authentication failure is the one opaque
// [ErrAuthentication].
//
// Two messages extend E4 v1 without changing it, both sent by devices to C2
// in the SK format: command acknowledgements ([Client.HandleCommandAck],
// [OpenAck]) and sync requests, which tell C2 which keys a device holds
// ([Client.SyncRequest], [OpenSyncRequest]). PROTOCOL-EXTENSIONS.md at the
// repository root gives their formats.
//
// The primitives are those of a [Suite]: [V1] by default, or [Fast] (AES-256
// and SHA3-256 with 10 rounds, same layouts) set deployment-wide in
// [Config.Suite] and in C2. The package-level functions run V1; a Suite has
// the same methods for its own primitives.
package e4
