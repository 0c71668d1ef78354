package actors

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scriptedListener returns the errors it holds, then accepts for real.
type scriptedListener struct {
	net.Listener
	errs []error
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

// TestAcceptFailureMarksThePort: running out of descriptors makes the
// client port unhealthy, with the cause, until a connection is accepted
// again, or for troubleMemory at most.
func TestAcceptFailureMarksThePort(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var h portHealth
	l := &connLimiter{Listener: &scriptedListener{Listener: tcp, errs: []error{&net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}}}, max: 10, health: &h}
	if _, err := l.Accept(); err == nil {
		t.Fatal("the scripted failure did not surface")
	}
	if err := h.err(time.Now()); err == nil || !strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("after EMFILE: %v", err)
	}
	if err := h.err(time.Now().Add(troubleMemory + time.Second)); err != nil {
		t.Fatalf("trouble outlived its memory: %v", err)
	}
	go func() {
		if c, err := net.Dial("tcp", tcp.Addr().String()); err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := h.err(time.Now()); err != nil {
		t.Fatalf("still unhealthy after a normal accept: %v", err)
	}
}
