package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes req on a new connection and reads one response, then
// reports whether the server closed the connection after it.
func rawExchange(t *testing.T, base, req string) (resp *http.Response, body string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = br.ReadByte()
	return resp, string(b), err == io.EOF
}

// The edge never echoes a request it cannot parse, and refuses framing
// that a proxy in front could read differently (request smuggling).
func TestEdgeRefusesMalformedAndAmbiguousRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	const auth = "Authorization: Basic d2ViX2Rldl93cml0ZV9rZXk6\r\n" // web_dev_write_key
	body := `{"userId":"smuggled","event":"Order Completed"}`
	for _, tc := range []struct {
		name, req, want string
	}{
		{
			"malformed header line",
			"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0LXdyaXRlLWtleQ==\r\nCookie: session=top-secret-cookie\r\nBad Header Line\r\nContent-Length: 2\r\n\r\n{}",
			"malformed HTTP request",
		},
		{
			"two Content-Lengths",
			"POST /v1/track HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\nContent-Length: 2\r\n\r\n" + body,
			"more than one Content-Length",
		},
		{
			"Content-Length and Transfer-Encoding",
			"POST /v1/track HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x", len(body)) + "\r\n" + body + "\r\n0\r\n\r\n",
			"both Content-Length and Transfer-Encoding",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, got, closed := rawExchange(t, s.base, tc.req)
			if resp.StatusCode != 400 || !strings.Contains(got, tc.want) {
				t.Errorf("%d %s, want 400 with %q", resp.StatusCode, got, tc.want)
			}
			for _, secret := range []string{"c2VjcmV0LXdyaXRlLWtleQ", "top-secret-cookie", "Authorization", "Cookie", "d2ViX2Rldl93cml0ZV9rZXk6"} {
				if strings.Contains(got, secret) {
					t.Errorf("the answer echoes the request (%q): %s", secret, got)
				}
			}
			if !closed {
				t.Errorf("the connection stays open after a request with ambiguous framing")
			}
		})
	}
	if r := s.admin(t, "GET", "/v1/profiles/user_id:smuggled"); r.status != 404 {
		t.Errorf("a refused request stored its event: %d %s", r.status, r.raw)
	}
}
