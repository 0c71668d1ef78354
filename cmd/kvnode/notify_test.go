package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestSdNotify plays systemd: a datagram socket named by NOTIFY_SOCKET
// (a path, then an abstract name) receives exactly the state sent; with
// no socket named, nothing is sent and nothing fails.
func TestSdNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if told, err := sdNotify("READY=1"); told || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: told %v, err %v; want neither", told, err)
	}
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@troupe-notify-test-" + t.Name()} {
		listen := name
		if name[0] == '@' {
			listen = "\x00" + name[1:]
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", name)
		if told, err := sdNotify("READY=1\nSTATUS=serving"); !told || err != nil {
			t.Fatalf("%s: told %v, err %v", name, told, err)
		}
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		conn.Close()
		if err != nil || string(buf[:n]) != "READY=1\nSTATUS=serving" {
			t.Fatalf("%s: received %q, %v", name, buf[:n], err)
		}
	}
	// A socket that is named but gone is an error the caller logs.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if told, err := sdNotify("READY=1"); told || err == nil {
		t.Fatalf("to a missing socket: told %v, err %v; want an error", told, err)
	}
}
