package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// sendEvery sends msg to pid every interval, the first time after first,
// until the returned function is called. The goroutine behind it only
// sends: the work happens in the receiving mailbox. (protoactor's
// scheduler.SendRepeatedly reads its stop flag without synchronisation,
// which the race detector reports when a timer is cancelled as it fires.)
func sendEvery(root *actor.RootContext, first, interval time.Duration, pid *actor.PID, msg any) (stop func()) {
	done := make(chan struct{})
	go func() {
		timer := time.NewTimer(first)
		defer timer.Stop()
		for {
			select {
			case <-timer.C:
				root.Send(pid, msg)
				timer.Reset(interval)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
