package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/parzelle/parzelle/config"
)

// HashPassword returns an argon2id hash of the password in PHC form, with
// the parameters OWASP recommends (19 MiB, 2 passes, 1 lane).
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	const m, t, p = 19 * 1024, 2, 1
	key := argon2.IDKey([]byte(password), salt, t, m, p, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// checkPassword reports whether password matches the PHC argon2id hash.
func checkPassword(hash, password string) (bool, error) {
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errors.New("not an argon2id hash of version 19")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<21 || t > 64 {
		return false, fmt.Errorf("argon2id parameters %q", f[3])
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[4])
	want, err2 := enc.DecodeString(f[5])
	if err := errors.Join(err1, err2); err != nil || len(want) < 16 {
		return false, fmt.Errorf("argon2id salt or hash: %v", err)
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked for unknown users, so that a sign-in takes as long
// whether the user exists or not.
var dummyHash, _ = HashPassword("parzelle: no such user")

// loadSessionKey reads the key that signs session cookies, creating it
// (0600) when the file does not exist.
func loadSessionKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("console: session key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return loadSessionKey(path) // another node created it first
		}
		if err != nil {
			return nil, fmt.Errorf("console: session key: %w", err)
		}
		_, err = f.Write(key)
		return key, errors.Join(err, f.Close())
	}
	if err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("console: session key %s: %d bytes, want at least 32", path, len(key))
	}
	return key, nil
}

// session is who is signed in, as the signed session cookie carries it.
type session struct {
	User   string `json:"u"`
	Role   string `json:"r"`
	Tenant string `json:"t,omitempty"`
	// Expires is the session's end, in Unix seconds.
	Expires int64 `json:"e"`
	// Nonce makes the session's CSRF token; Cred binds the session to the
	// user's password hash, so that changing it ends the sessions.
	Nonce string `json:"n"`
	Cred  string `json:"c"`
}

// operator reports whether the session is a platform operator's.
func (s *session) operator() bool { return s.Role == config.RoleOperator }

// credential is the part of a user's password hash a session is bound to.
func credential(u config.ConsoleUser) string {
	sum := sha256.Sum256([]byte(u.PasswordHash))
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// sessions signs and checks session cookies and CSRF tokens.
type sessions struct{ key []byte }

func (k sessions) mac(purpose string, data []byte) []byte {
	h := hmac.New(sha256.New, k.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(nil)
}

func (k sessions) encode(s *session) string {
	data, _ := json.Marshal(s)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(data) + "." + enc.EncodeToString(k.mac("session", data))
}

// decode returns the cookie's session, if its signature holds and it has
// not expired at now.
func (k sessions) decode(cookie string, now time.Time) (*session, error) {
	data64, mac64, ok := strings.Cut(cookie, ".")
	enc := base64.RawURLEncoding
	data, err1 := enc.DecodeString(data64)
	mac, err2 := enc.DecodeString(mac64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(mac, k.mac("session", data)) {
		return nil, errors.New("the session cookie is not valid")
	}
	s := &session{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, errors.New("the session cookie is not valid")
	}
	if now.Unix() >= s.Expires {
		return nil, errors.New("the session has expired")
	}
	return s, nil
}

// csrf is the token every state-changing form of the session carries.
func (k sessions) csrf(s *session) string {
	return base64.RawURLEncoding.EncodeToString(k.mac("csrf", []byte(s.Nonce)))
}

// sameToken compares a token from a request with the expected one in
// constant time; an empty token never matches.
func sameToken(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func randomToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// limiter allows a few failed sign-ins per client address and per user
// name in a window, and refuses the rest until the window has passed.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, fails: map[string][]time.Time{}}
}

// wait is how long keys must wait before the next attempt (0: go ahead).
func (l *limiter) wait(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var longest time.Duration
	for _, k := range keys {
		recent := l.fails[k][:0]
		for _, t := range l.fails[k] {
			if now.Sub(t) < l.window {
				recent = append(recent, t)
			}
		}
		if len(recent) == 0 {
			delete(l.fails, k)
			continue
		}
		l.fails[k] = recent
		if len(recent) >= l.max {
			longest = max(longest, l.window-now.Sub(recent[0]))
		}
	}
	return longest
}

func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.fails[k] = append(l.fails[k], now)
	}
}
