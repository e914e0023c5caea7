package sdktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// AdminToken is the admin token every server started by Start gets
// (CARTERA_ADMIN_TOKEN), unless Options.Env sets another.
const AdminToken = "sdktest-admin-token-0123456789"

// Write keys of examples/cartera.yaml.
const (
	WebKey = "web_dev_write_key"
	AppKey = "app_dev_write_key"
	PosKey = "pos_dev_write_key"
)

const (
	startTimeout = 30 * time.Second
	// stopTimeout is above the server's default shutdown_timeout (15s), so
	// a slow drain shows up as a wrong exit, not as a kill by the test.
	stopTimeout = 30 * time.Second
)

// RepoRoot finds the root of the cartera module by walking up from the
// working directory (a test runs in its package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module cartera\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module cartera above the working directory")
		}
		dir = parent
	}
}

// Build compiles cmd/cartera into dir and returns the binary's path. Call it
// once, from TestMain. When the tests run with -race, so is the binary built:
// a data race in the server then fails the test that provoked it.
func Build(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "cartera")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "cartera/cmd/cartera")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// Options configure a server process.
type Options struct {
	// Data is the bbolt file; a fresh file under tb.TempDir() when empty.
	Data string
	// Config is the YAML config; <repo>/examples/cartera.yaml when empty.
	Config string
	// Env is added to the process's environment (CARTERA_* variables of
	// the test's own environment are not passed on). Keep
	// CARTERA_LOG_LEVEL at info or debug: Start waits for an info line.
	Env map[string]string
}

// Server is one `cartera serve` process listening on a random port of
// 127.0.0.1. Its methods are not safe for concurrent use, except Kill, Stop,
// URL and Logs, which clients may race with.
type Server struct {
	tb   testing.TB
	bin  string
	opts Options
	dir  string

	// clock is the gateway's dev clock as the test sees it: it starts at
	// clocktest.Start (CARTERA_TEST_CLOCK or the wall clock) and goes on
	// across restarts. Nil when Env turns the dev clock off ("0").
	clock *clocktest.Running

	mu   sync.Mutex
	url  string
	proc *process
	runs []*process // every process started, for the logs of a failed test
}

// process is one run of the binary.
type process struct {
	cmd    *exec.Cmd
	logs   *logWriter
	exited chan struct{}
	err    error // the result of Wait, set before exited closes
}

// Clock is the gateway's dev clock as the test sees it (nil when the test
// turned it off): the gateway's time, less what POST /v1/admin/clock moved.
func (s *Server) Clock() *clocktest.Running { return s.clock }

// Start runs `bin serve --addr 127.0.0.1:0` and returns once the server
// logged that it listens. The process is killed when the test ends, if it
// still runs; the test's log then shows its stderr if the test failed.
func Start(tb testing.TB, bin string, opts Options) *Server {
	tb.Helper()
	dir := tb.TempDir()
	if opts.Data == "" {
		opts.Data = filepath.Join(dir, "cartera.db")
	}
	if opts.Config == "" {
		root, err := RepoRoot()
		if err != nil {
			tb.Fatal(err)
		}
		opts.Config = filepath.Join(root, "examples", "cartera.yaml")
	}
	s := &Server{tb: tb, bin: bin, opts: opts, dir: dir}
	switch v := opts.Env["CARTERA_DEV_CLOCK"]; v {
	case "0", "false":
	case "", "1", "true":
		start, err := clocktest.Start()
		if err != nil {
			tb.Fatal(err)
		}
		s.clock = clocktest.NewRunning(start)
	default:
		start, err := time.Parse(time.RFC3339, v)
		if err != nil {
			tb.Fatalf("CARTERA_DEV_CLOCK: %v", err)
		}
		s.clock = clocktest.NewRunning(start)
	}
	tb.Cleanup(func() {
		s.mu.Lock()
		p, runs := s.proc, s.runs
		s.mu.Unlock()
		if p == nil {
			return
		}
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if tb.Failed() {
			for i, r := range runs {
				<-r.exited
				tb.Logf("cartera run %d of %d (%v), stderr:\n%s", i+1, len(runs), r.err, r.logs.String())
			}
		}
	})
	s.start()
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	env := make([]string, 0, len(os.Environ())+len(s.opts.Env)+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARTERA_") {
			env = append(env, kv)
		}
	}
	env = append(env, "CARTERA_ADMIN_TOKEN="+AdminToken)
	for k, v := range s.opts.Env {
		if k != "CARTERA_DEV_CLOCK" {
			env = append(env, k+"="+v)
		}
	}
	if s.clock != nil {
		// A restart goes on from where the clock is, never back to its start.
		env = append(env, "CARTERA_DEV_CLOCK="+s.clock.DevClockEnv())
	} else if v, ok := s.opts.Env["CARTERA_DEV_CLOCK"]; ok {
		env = append(env, "CARTERA_DEV_CLOCK="+v)
	}
	lw := &logWriter{listening: make(chan string, 1)}
	cmd := exec.Command(s.bin, "serve", "--addr", "127.0.0.1:0", "--data", s.opts.Data, "--config", s.opts.Config)
	cmd.Env = env
	cmd.Dir = s.dir
	cmd.Stdout = lw
	cmd.Stderr = lw
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start cartera: %v", err)
	}
	p := &process{cmd: cmd, logs: lw, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.runs = append(s.runs, p)
	s.mu.Unlock()

	select {
	case addr := <-lw.listening:
		s.mu.Lock()
		s.url = "http://" + addr
		s.mu.Unlock()
	case <-p.exited:
		s.tb.Fatalf("cartera exited before listening: %v\n%s", p.err, lw.String())
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-p.exited
		s.tb.Fatalf("cartera did not log \"listening\" within %s\n%s", startTimeout, lw.String())
	}
}

// URL is the base URL of the running process, such as http://127.0.0.1:41234.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Data is the path of the bbolt file.
func (s *Server) Data() string { return s.opts.Data }

// Logs returns what the current process wrote on stdout and stderr so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	return p.logs.String()
}

// Kill sends SIGKILL, as a crash or an OOM killer would, and waits for the
// process to be gone.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits for the process to exit; it returns nil only
// for exit status 0. A process still running after 30s is killed.
func (s *Server) Stop() error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("no exit within %s of SIGTERM; killed", stopTimeout)
	}
}

// Restart starts the binary again, with the same data file, config and
// environment, on a new port. The previous process must have exited (Kill
// or Stop).
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	select {
	case <-p.exited:
	default:
		s.tb.Fatal("Restart: the server is still running; Kill or Stop it first")
	}
	s.start()
}

// logWriter keeps the process's output and spots the "listening" line of
// the JSON log.
type logWriter struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	listening chan string
	seen      bool
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		if w.seen {
			continue
		}
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
			w.seen = true
			w.listening <- rec.Addr
		}
	}
	return len(b), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// LogLines returns the messages ("msg") of the JSON log lines so far.
func (s *Server) LogLines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.Logs()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg != "" {
			out = append(out, rec.Msg)
		}
	}
	return out
}

// Profile is the part of GET /v1/profiles/{kind}:{value} the tests read.
type Profile struct {
	ID         string         `json:"id"`
	Identities []Identity     `json:"identities"`
	Traits     map[string]any `json:"traits"`
	EventCount int            `json:"event_count"`
	Events     []Event        `json:"events"`
	// Fields is the whole answer, decoded, for comparisons.
	Fields map[string]any `json:"-"`
}

// Identity is one identifier of a profile.
type Identity struct {
	Kind   string `json:"kind"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Event is a stored event as the admin API shows it.
type Event struct {
	Type        string         `json:"type"`
	MessageID   string         `json:"messageId"`
	UserID      string         `json:"userId"`
	AnonymousID string         `json:"anonymousId"`
	Event       string         `json:"event"`
	Name        string         `json:"name"`
	Properties  map[string]any `json:"properties"`
	Traits      map[string]any `json:"traits"`
	Source      string         `json:"source"`
}

// HasIdentity reports whether the profile holds kind:value.
func (p *Profile) HasIdentity(kind, value string) bool {
	for _, id := range p.Identities {
		if id.Kind == kind && id.Value == value {
			return true
		}
	}
	return false
}

// EventByMessageID returns the stored event with that messageId, or nil.
func (p *Profile) EventByMessageID(id string) *Event {
	for i := range p.Events {
		if p.Events[i].MessageID == id {
			return &p.Events[i]
		}
	}
	return nil
}

// client is used for the admin API; ingestion tests bring their own.
var client = &http.Client{Timeout: 15 * time.Second}

// GetProfile asks the admin API for the profile of ident ("kind:value"),
// with up to events events. It returns nil and the status for an answer
// other than 200.
func (s *Server) GetProfile(tb testing.TB, ident string, events int) (*Profile, int) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/profiles/%s?events=%d", s.URL(), ident, events), nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("GET profile %s: %v", ident, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET profile %s: read body: %v", ident, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	p := &Profile{}
	if err := json.Unmarshal(body, p); err != nil {
		tb.Fatalf("GET profile %s: decode %s: %v", ident, body, err)
	}
	if err := json.Unmarshal(body, &p.Fields); err != nil {
		tb.Fatalf("GET profile %s: decode %s: %v", ident, body, err)
	}
	return p, resp.StatusCode
}

// MustProfile is GetProfile that fails the test unless the answer is 200.
func (s *Server) MustProfile(tb testing.TB, ident string, events int) *Profile {
	tb.Helper()
	p, status := s.GetProfile(tb, ident, events)
	if p == nil {
		tb.Fatalf("GET /v1/profiles/%s: status %d, want 200", ident, status)
	}
	return p
}

// Main is a TestMain body for packages that run the binary: it builds it
// into a temporary folder, sets *bin, runs the tests and cleans up.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "cartera-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin, err = Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
