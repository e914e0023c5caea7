package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"sync"
	"time"
)

// session is one login. Sessions are kept in memory only: a restart of
// the binary logs everyone out, and a cluster of several gateways needs
// sticky sessions. Both are acceptable for a first version; a bucket of
// the console's own is the way to keep them.
type session struct {
	id      string
	user    string
	role    Role
	csrf    string
	expires time.Time
	// flash and errs are shown once, on the next page (guarded by
	// sessions.mu).
	flash string
	errs  []string
	// reload is the last reload's result, shown once on the reload page.
	reload *ReloadResult
}

// checkCSRF compares a form's token with the session's in constant time.
func (s *session) checkCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

// maxSessions bounds the store: past it the oldest-expiring go first.
const maxSessions = 10000

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl}
}

// randomToken returns 32 random bytes in hex.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

func (s *sessions) create(user string, role Role, now time.Time) *session {
	ss := &session{id: randomToken(), user: user, role: role, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.sweep(now)
	}
	for len(s.m) >= maxSessions {
		var oldest *session
		for _, v := range s.m {
			if oldest == nil || v.expires.Before(oldest.expires) {
				oldest = v
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[ss.id] = ss
	return ss
}

func (s *sessions) sweep(now time.Time) {
	for id, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, id)
		}
	}
}

// get returns the live session of an id, or nil.
func (s *sessions) get(id string, now time.Time) *session {
	if len(id) != 64 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[id]
	if v == nil {
		return nil
	}
	if !now.Before(v.expires) {
		delete(s.m, id)
		return nil
	}
	return v
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// setFlash leaves a message for the next page of the session.
func (s *sessions) setFlash(ss *session, msg string, errs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.flash, ss.errs = msg, errs
}

// takeFlash returns the message left for this page, once.
func (s *sessions) takeFlash(ss *session) (string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, errs := ss.flash, ss.errs
	ss.flash, ss.errs = "", nil
	return msg, errs
}

// setReload keeps a reload's result for the reload page.
func (s *sessions) setReload(ss *session, r *ReloadResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.reload = r
}

// takeReload returns the last reload's result, once.
func (s *sessions) takeReload(ss *session) *ReloadResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ss.reload
	ss.reload = nil
	return r
}
