package main

import (
	"net"
	"os"
)

// sdNotify sends state to the service manager (systemd's sd_notify
// protocol: one datagram of NEWLINE-separated assignments on the unix
// socket named by $NOTIFY_SOCKET, a name starting with '@' being in the
// abstract namespace). It reports whether a manager was told; without
// $NOTIFY_SOCKET, outside systemd or in a unit that is not Type=notify,
// it does nothing. The unit file (deploy/systemd/kvnode.service) is
// Type=notify: kvnode says READY=1 once its ports are open and its state
// file and Raft are up, and STOPPING=1 when it begins a graceful stop.
//
// READY=1 means serving, not that the cluster has a quorum: a node of a
// new cluster must start before the others for one to form, so systemctl
// start must not wait for them. /readyz (kvnode healthcheck) tells when
// this node can serve linearizable requests.
func sdNotify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	if name[0] == '@' {
		addr.Name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}
