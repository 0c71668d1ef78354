package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op names the kind of state change a Command makes.
type Op uint8

// The operations a replicated Command can carry. The numeric values are part
// of the on-disk log format: never renumber them, only append.
const (
	// OpSet writes Value and Flags to Key, keeping its session and lock index.
	OpSet Op = 1
	// OpCAS writes like OpSet only if Key's ModifyIndex equals Index (0 means
	// "only if the key does not exist").
	OpCAS Op = 2
	// OpDelete removes Key if present.
	OpDelete Op = 3
	// OpDeleteCAS removes Key only if its ModifyIndex equals Index. A missing
	// key counts as success, as in Consul.
	OpDeleteCAS Op = 4
	// OpDeleteTree removes every key that starts with Key.
	OpDeleteTree Op = 5
	// OpRegisterNode records that node Key serves its HTTP API at Value.
	OpRegisterNode Op = 6
	// OpDeregisterNode forgets node Key's HTTP address.
	OpDeregisterNode Op = 7
	// OpNoop changes nothing but the applied index. A new leader commits one
	// so that every entry up to its commit index is visible to the FSM (raft's
	// own no-op entries never reach the FSM).
	OpNoop Op = 8
	// OpACLSetPolicy creates (Index 0) or updates (Index = its ModifyIndex)
	// the policy Key; Value is EncodeACLPolicy's.
	OpACLSetPolicy Op = 9
	// OpACLDeletePolicy removes the policy Key.
	OpACLDeletePolicy Op = 10
	// OpACLSetToken creates (Index 0) or updates (Index = its ModifyIndex)
	// the token with accessor Key; Value is EncodeACLToken's.
	OpACLSetToken Op = 11
	// OpACLDeleteToken removes the token with accessor Key.
	OpACLDeleteToken Op = 12
	// OpACLBootstrap creates the token in Value unless a bootstrap has
	// already happened.
	OpACLBootstrap Op = 13
	// OpTxn applies the operations in Txn atomically: all of them, or, if
	// any fails its check, none (see TxnResult).
	OpTxn Op = 14
	// OpSetClusterID records Key as the cluster's id, once: a later one
	// with another id changes nothing (Result.OK false).
	OpSetClusterID Op = 15
	// OpCheckpoint changes nothing; every node hashes its whole state as
	// of this entry's index (see Store.StateChecks), so nodes can compare
	// their states at one index.
	OpCheckpoint Op = 16
	// OpSessionCreate creates the session Value (EncodeSession) with id
	// Key, unless a session with that id exists (Result.OK false).
	OpSessionCreate Op = 17
	// OpSessionDestroy invalidates session Key: the keys it holds are
	// released or deleted (its behaviour) and it is gone. Destroy, TTL
	// expiry and the death of its node all end a session with it.
	OpSessionDestroy Op = 18
	// OpReapTombstones removes, in key order, at most Flags tombstones (0:
	// all) whose index is at most Index (see tombstones.go); Result.OK
	// false when it stopped at Flags.
	OpReapTombstones Op = 19
	// OpAlarmRaise raises the alarm Key (AlarmKey: type and member) with
	// Value as its reason; raising one already raised changes nothing.
	OpAlarmRaise Op = 20
	// OpAlarmClear disarms every alarm Key matches (AlarmKey; "" is
	// every alarm). Result.OK reports whether one was raised.
	OpAlarmClear Op = 21

	// opLast is the highest Op a decoder accepts.
	opLast = OpAlarmClear
)

// known reports whether o is an operation this release can apply: a
// command the decoder accepts must never fail to apply, or it would stop
// every node that meets it in the log. Every number up to opLast is one
// today; a gap left in the numbering must be refused here.
func (o Op) known() bool { return o >= OpSet && o <= opLast }

// String is the operation's name, for logs and errors.
func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpCAS:
		return "cas"
	case OpDelete:
		return "delete"
	case OpDeleteCAS:
		return "delete-cas"
	case OpDeleteTree:
		return "delete-tree"
	case OpRegisterNode:
		return "register-node"
	case OpDeregisterNode:
		return "deregister-node"
	case OpNoop:
		return "noop"
	case OpACLSetPolicy:
		return "acl-set-policy"
	case OpACLDeletePolicy:
		return "acl-delete-policy"
	case OpACLSetToken:
		return "acl-set-token"
	case OpACLDeleteToken:
		return "acl-delete-token"
	case OpACLBootstrap:
		return "acl-bootstrap"
	case OpTxn:
		return "txn"
	case OpSetClusterID:
		return "set-cluster-id"
	case OpCheckpoint:
		return "checkpoint"
	case OpSessionCreate:
		return "session-create"
	case OpSessionDestroy:
		return "session-destroy"
	case OpReapTombstones:
		return "reap-tombstones"
	case OpAlarmRaise:
		return "alarm-raise"
	case OpAlarmClear:
		return "alarm-clear"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// commandVersion is the first byte of every encoded Command. A newer node
// must keep decoding every version it ever wrote, so a log written by an
// older release stays readable.
const commandVersion = 1

// ErrBadCommand reports an encoded command that cannot be decoded. A log
// entry that fails to decode means the log is corrupt or was written by an
// incompatible release.
var ErrBadCommand = errors.New("storage: malformed command")

// Command is one replicated state change. It is what the Raft log carries.
type Command struct {
	Op    Op
	Key   string
	Value []byte
	Flags uint64
	// Index is the expected ModifyIndex of OpCAS and OpDeleteCAS, and
	// for an OpTxn the applied index at which the leader checked the
	// lock-delays of the keys it acquires (see CheckLockDelays).
	Index   uint64
	Session string // reserved
	// Txn is OpTxn's operations; it takes the place of Value, which an
	// OpTxn does not carry.
	Txn []TxnOp
}

// Encode returns the versioned binary form of c:
//
//	version(1) op(1) flags(uvarint) index(uvarint)
//	len(key)(uvarint) key  len(session)(uvarint) session  value(rest)
//
// Varints keep small commands small; the value goes last so it needs no
// length prefix. An OpTxn puts its operations where the value goes (see
// appendTxn).
func (c *Command) Encode() []byte {
	n := 2 + 3*binary.MaxVarintLen64 + len(c.Key) + binary.MaxVarintLen64 + len(c.Session) + len(c.Value)
	if c.Op == OpTxn {
		n += txnEncodedSize(c.Txn)
	}
	return c.AppendEncode(make([]byte, 0, n))
}

// AppendEncode appends the encoding of c to b and returns the result, so hot
// paths can reuse a buffer.
func (c *Command) AppendEncode(b []byte) []byte {
	b = append(b, commandVersion, byte(c.Op))
	b = binary.AppendUvarint(b, c.Flags)
	b = binary.AppendUvarint(b, c.Index)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	b = binary.AppendUvarint(b, uint64(len(c.Session)))
	b = append(b, c.Session...)
	if c.Op == OpTxn {
		return appendTxn(b, c.Txn)
	}
	return append(b, c.Value...)
}

// DecodeCommand parses the output of Command.Encode. The returned Command's
// Value, and its operations' values, alias data.
func DecodeCommand(data []byte) (*Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadCommand, len(data))
	}
	if data[0] != commandVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrBadCommand, data[0])
	}
	c := &Command{Op: Op(data[1])}
	if c.Op < OpSet || c.Op > opLast || !c.Op.known() {
		return nil, fmt.Errorf("%w: unknown op %d", ErrBadCommand, data[1])
	}
	d := decoder{b: data[2:]}
	c.Flags = d.uvarint()
	c.Index = d.uvarint()
	c.Key = string(d.bytes())
	c.Session = string(d.bytes())
	if d.err != nil {
		return nil, d.err
	}
	if c.Op == OpTxn {
		ops, err := decodeTxn(d.b)
		if err != nil {
			return nil, err
		}
		c.Txn = ops
		return c, nil
	}
	if len(d.b) > 0 {
		c.Value = d.b
	}
	return c, nil
}

// decoder reads varint-framed fields and remembers the first error, so the
// caller checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrBadCommand)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field of %d bytes overruns the input", ErrBadCommand, n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
