package main_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"cartera/internal/sdktest"
)

// TestProcsPerCPU: the binary runs two Ps per CPU the runtime finds (the
// applier's long computations and the acknowledgements' short ones then
// share the CPUs through the kernel), unless GOMAXPROCS sets them; the
// gateway's /metrics says how many it runs.
func TestProcsPerCPU(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, env string
		want      int
	}{
		{"default", "", 2 * runtime.GOMAXPROCS(0)},
		{"set by GOMAXPROCS", "3", 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.env == "" && os.Getenv("GOMAXPROCS") != "" {
				t.Skip("the test's own GOMAXPROCS is set: the runtime's default is not known here")
			}
			s := sdktest.Start(t, bin, sdktest.Options{Env: map[string]string{"GOMAXPROCS": c.env}})
			if got := gomaxprocs(t, s.URL()); got != c.want {
				t.Errorf("go_sched_gomaxprocs_threads %d, want %d", got, c.want)
			}
		})
	}
}

// gomaxprocs reads go_sched_gomaxprocs_threads from the gateway's /metrics.
func gomaxprocs(t *testing.T, base string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sdktest.AdminToken)
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	m := regexp.MustCompile(`(?m)^go_sched_gomaxprocs_threads (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics has no go_sched_gomaxprocs_threads:\n%.2000s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
