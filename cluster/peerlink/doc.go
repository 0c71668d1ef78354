// Package peerlink is the channel between the nodes of one cluster. It
// runs on the Raft port and carries everything one node sends another:
// Raft's RPCs, and the requests of the forwarding protocol (a follower's
// writes and read-index requests sent to the leader, forwarded membership
// changes, the failure detector's probes). The client port serves clients
// only.
//
// The package owns both halves of the channel (the listener that tells the
// kinds of connection apart, the dialler, the client and the server of the
// forwarding protocol, and its wire types), so a change of protocol is one
// diff.
//
// Every connection goes through the node's faultnet.Network, so fault
// rules act on all of them, and opens with:
//
//  1. faultnet's preamble: the caller's node id in the clear, which tells
//     the receiving side's fault rules whose link this is;
//  2. with TLS on, a mutual TLS handshake against the cluster CA; the
//     caller's certificate must name the node id its preamble claimed,
//     and the callee's the id the caller expects at that address;
//  3. one byte naming the channel (Raft or the forwarding protocol), then
//     the caller's cluster id, length first.
//
// The receiver then admits the caller only if its cluster id is the
// receiver's (when both have one) and it is a member (Config.Admit).
// Without TLS the node id is a claim, not a proof: anyone who can reach
// the port can act as a member (docs/security.md).
package peerlink
