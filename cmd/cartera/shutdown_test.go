package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/internal/smtptest"
)

// TestShutdownUnderLoad: serve stops (the cancel a SIGTERM causes) while a
// slow SMTP relay holds every mail in flight. Nothing is dead-lettered, no
// attempt is counted for the sends cut short, serve exits within 5 s, and
// after a restart every mail arrives and every delivery is recorded on its
// profile.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	relay := smtptest.StartWith(t, smtptest.Options{User: dlSMTPUser, Pass: dlSMTPPass, Delay: time.Minute})
	rig := newDeliveryRig(t, "")
	env := map[string]string{"CARTERA_SMTP_URL": relay.URL, "CARTERA_SMTP_CA_FILE": relay.CAFile}
	s, stop := rig.serve(t, env)

	const n = 20
	var batch []string
	for i := range n {
		batch = append(batch, fmt.Sprintf(`{"type":"identify","userId":"u-s%02d","traits":{"email":"s%02d@example.com","consent":{"email":true}}}`, i, i))
	}
	mustOK(t, s.send(t, dlWebKey, "/v1/batch", `{"batch":[`+strings.Join(batch, ",")+`]}`))
	// The email destination sends 4 at a time: wait until all 4 are held.
	eventually(t, 15*time.Second, "4 mails held at the relay", func() bool { return relay.Receiving() == 4 })

	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop within 5 s of the cancel")
	}

	db, err := bbolt.Open(rig.data, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := channels.NewOutbox(db, channels.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ob.List(channels.StateDead, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dead {
		t.Errorf("dead letter after the stop: %s: %s", m.Key, m.LastError)
	}
	queued, err := ob.List(channels.StateQueued, 100)
	if err != nil {
		t.Fatal(err)
	}
	// None was answered: the 4 in flight, and whatever the journeys had
	// handed over, are queued (the rest wait in the journeys' own queue).
	if len(queued) < 4 || len(queued) > n {
		t.Errorf("queued after the stop = %d, want the 4 in flight and at most %d", len(queued), n)
	}
	for _, m := range queued {
		if m.Attempts != 0 || m.LastError != "" {
			t.Errorf("%s after the stop: %d attempts, last error %q; want none", m.Key, m.Attempts, m.LastError)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The relay is quick again; a restart sends everything.
	relay.SetDelay(0)
	s, _ = rig.serve(t, env)
	keys := func() map[string]bool {
		out := map[string]bool{}
		for _, m := range relay.Mails() {
			if _, rest, ok := strings.Cut(string(m.Data), "X-Cartera-Key: "); ok {
				k, _, _ := strings.Cut(rest, "\r\n")
				out[k] = true
			}
		}
		return out
	}
	eventually(t, 15*time.Second, "every mail at the relay after the restart", func() bool {
		return len(keys()) == n && len(s.admin(t, "GET", "/v1/outbox?state=queued").body["messages"].([]any)) == 0
	})
	for i := range n {
		ident := fmt.Sprintf("user_id:u-s%02d", i)
		eventually(t, 5*time.Second, "Email Delivered on "+ident, func() bool {
			return len(eventsNamed(s.profile(t, ident), "Email Delivered")) == 1
		})
	}
	if d := s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any); len(d) != 0 {
		t.Errorf("dead letters after the restart: %v", d)
	}
}
