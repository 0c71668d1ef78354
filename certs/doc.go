// Package certs owns Troupe's TLS material: it issues a development CA and
// the node and client certificates signed by it, loads and reloads a node's
// files, and builds the tls.Configs for the client API and for the
// node-to-node channel.
//
// A node's identity is the URI SAN troupe://node/<id> in its certificate
// (see NodeURI), never a host name: peers are dialled by IP:port, so a peer
// is verified by its chain to the cluster CA and by that URI alone. Client
// certificates from the same CA carry no such URI, so they can reach the
// client API (when it asks for client certificates) but can never pass as a
// node. Host names and IP addresses in node certificates are for HTTPS
// clients of the client API, which verify hosts the usual way.
//
// The configs built from a Reloader read its current material on every
// handshake, so Reload (kvnode calls it on SIGHUP) takes effect for new
// connections without restarting listeners; established connections keep
// the material they were made with.
//
// Verification failures name their reason and wrap one of the Err* values,
// so a caller can tell an expired certificate from a foreign CA with
// errors.Is. The side that refuses a certificate knows why; the other side
// only sees a TLS alert, which Explain turns into a readable error.
package certs
