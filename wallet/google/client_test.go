package google_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"cartera/wallet/google"
)

// recorded is one request the fake Wallet API saw.
type recorded struct {
	Method, Path, Auth, ContentType string
	Body                            []byte
}

// fakeWallet is an httptest server that records requests and answers with
// status (200 unless set).
type fakeWallet struct {
	mu     sync.Mutex
	reqs   []recorded
	status int
}

func newFakeWallet(t *testing.T) (*fakeWallet, *google.Client) {
	t.Helper()
	f := &fakeWallet{status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
		status := f.status
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != http.StatusOK {
			_, _ = io.WriteString(w, `{"error":{"code":429,"message":"quota"}}`)
			return
		}
		if r.Method == http.MethodPatch {
			_, _ = w.Write(body) // Google answers with the updated object
			return
		}
		_, _ = io.WriteString(w, `{"resource":{"id":"`+testIssuer+`.cartera-p42","classId":"`+testIssuer+`.cartera-loyalty"}}`)
	}))
	t.Cleanup(srv.Close)
	c := &google.Client{
		BaseURL:    srv.URL + "/walletobjects/v1",
		HTTPClient: srv.Client(),
		Token:      func(context.Context) (string, error) { return "test-access-token", nil },
	}
	return f, c
}

func (f *fakeWallet) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func TestPatchObjectTierChange(t *testing.T) {
	f, c := newFakeWallet(t)
	obj := testObject()
	obj.LoyaltyPoints.Balance = google.IntBalance(1500)
	obj.TextModulesData = []google.TextModuleData{google.TierModule("Tier", "Gold")}

	got, err := c.PatchObject(context.Background(), obj)
	if err != nil {
		t.Fatal(err)
	}
	if got.TextModulesData[0].Body != "Gold" || *got.LoyaltyPoints.Balance.Int != 1500 {
		t.Errorf("returned object = %+v", got)
	}

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPatch {
		t.Errorf("method = %s, want PATCH", r.Method)
	}
	if want := "/walletobjects/v1/loyaltyObject/" + testIssuer + ".cartera-p42"; r.Path != want {
		t.Errorf("path = %s, want %s", r.Path, want)
	}
	if r.Auth != "Bearer test-access-token" {
		t.Errorf("Authorization = %q", r.Auth)
	}
	if r.ContentType != "application/json" {
		t.Errorf("Content-Type = %q", r.ContentType)
	}
	want := `{"id":"3388000000012345678.cartera-p42","classId":"3388000000012345678.cartera-loyalty",` +
		`"state":"ACTIVE","accountId":"p42","accountName":"Ada Lovelace",` +
		`"loyaltyPoints":{"label":"Points","balance":{"int":1500}},` +
		`"barcode":{"type":"QR_CODE","value":"cartera:p42"},` +
		`"textModulesData":[{"id":"tier","header":"Tier","body":"Gold"}]}`
	if string(r.Body) != want {
		t.Errorf("body:\n%s\nwant:\n%s", r.Body, want)
	}
}

func TestAddMessageBody(t *testing.T) {
	f, c := newFakeWallet(t)
	msg := google.Message{ID: "tier-gold", Header: "You reached Gold", Body: "Enjoy free delivery.", MessageType: google.MessageTextAndNotify}
	got, err := c.AddMessage(context.Background(), testIssuer+".cartera-p42", msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != testIssuer+".cartera-p42" {
		t.Errorf("resource id = %q", got.ID)
	}
	r := f.requests()[0]
	if r.Method != http.MethodPost || r.Path != "/walletobjects/v1/loyaltyObject/"+testIssuer+".cartera-p42/addMessage" {
		t.Errorf("request = %s %s", r.Method, r.Path)
	}
	if r.Auth != "Bearer test-access-token" {
		t.Errorf("Authorization = %q", r.Auth)
	}
	want := `{"message":{"id":"tier-gold","header":"You reached Gold","body":"Enjoy free delivery.","messageType":"TEXT_AND_NOTIFY"}}`
	if string(r.Body) != want {
		t.Errorf("body:\n%s\nwant:\n%s", r.Body, want)
	}
}

func TestAddMessageNotifyLimit(t *testing.T) {
	f, c := newFakeWallet(t)
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	c.Now = func() time.Time { return now }
	ctx := context.Background()
	id := testIssuer + ".cartera-p42"
	notify := google.Message{Header: "h", Body: "b", MessageType: google.MessageTextAndNotify}

	for i := range 3 {
		if _, err := c.AddMessage(ctx, id, notify); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		now = now.Add(time.Hour)
	}
	_, err := c.AddMessage(ctx, id, notify)
	if !errors.Is(err, google.ErrNotifyLimit) {
		t.Fatalf("4th notifying message: err = %v, want ErrNotifyLimit", err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests reached Google, want 3 (the 4th is refused locally)", n)
	}

	// A plain TEXT message does not notify and is not limited.
	if _, err := c.AddMessage(ctx, id, google.Message{Header: "h", Body: "b", MessageType: google.MessageText}); err != nil {
		t.Errorf("TEXT message: %v", err)
	}
	// Another object has its own allowance.
	if _, err := c.AddMessage(ctx, testIssuer+".cartera-p43", notify); err != nil {
		t.Errorf("other object: %v", err)
	}
	// 24 hours after the first message, one slot is free again.
	now = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	if _, err := c.AddMessage(ctx, id, notify); err != nil {
		t.Errorf("after 24h: %v", err)
	}
	if _, err := c.AddMessage(ctx, id, notify); !errors.Is(err, google.ErrNotifyLimit) {
		t.Errorf("second after 24h: err = %v, want ErrNotifyLimit", err)
	}
}

func TestAddMessageFailureDoesNotCount(t *testing.T) {
	f, c := newFakeWallet(t)
	ctx := context.Background()
	id := testIssuer + ".cartera-p42"
	notify := google.Message{Header: "h", Body: "b", MessageType: google.MessageTextAndNotify}

	f.mu.Lock()
	f.status = http.StatusTooManyRequests
	f.mu.Unlock()
	for range 3 {
		_, err := c.AddMessage(ctx, id, notify)
		var apiErr *google.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("err = %v, want APIError 429", err)
		}
	}
	f.mu.Lock()
	f.status = http.StatusOK
	f.mu.Unlock()
	for i := range 3 {
		if _, err := c.AddMessage(ctx, id, notify); err != nil {
			t.Fatalf("message %d after failures: %v", i+1, err)
		}
	}
}

func TestAddMessageConcurrentCap(t *testing.T) {
	f, c := newFakeWallet(t)
	id := testIssuer + ".cartera-p42"
	notify := google.Message{Header: "h", Body: "b", MessageType: google.MessageTextAndNotify}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := c.AddMessage(context.Background(), id, notify)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var ok, limited int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, google.ErrNotifyLimit):
			limited++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 3 || limited != 7 || len(f.requests()) != 3 {
		t.Errorf("ok=%d limited=%d requests=%d, want 3, 7, 3", ok, limited, len(f.requests()))
	}
}

func TestClientRateLimit(t *testing.T) {
	_, c := newFakeWallet(t)
	if limit, burst := google.RateOf(c); limit != google.RequestsPerSecond || burst != google.RequestsPerSecond {
		t.Errorf("limiter = %v/s burst %d, want %d/s burst %d", limit, burst, google.RequestsPerSecond, google.RequestsPerSecond)
	}

	// With the bucket spent, the next call would wait for a refill; a
	// context that cannot wait that long fails at once, before Google.
	f, c := newFakeWallet(t)
	google.SetSlowLimiter(c, 2)
	obj := testObject()
	for i := range 2 {
		if _, err := c.PatchObject(context.Background(), obj); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.PatchObject(ctx, obj); err == nil {
		t.Error("3rd call succeeded, want a rate-limit error")
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests reached Google, want 2", n)
	}
}

func TestClientTokenError(t *testing.T) {
	f, c := newFakeWallet(t)
	boom := errors.New("no credentials")
	c.Token = func(context.Context) (string, error) { return "", boom }
	if _, err := c.PatchObject(context.Background(), testObject()); !errors.Is(err, boom) {
		t.Errorf("err = %v, want wrapped token error", err)
	}
	if len(f.requests()) != 0 {
		t.Error("request sent without a token")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := google.DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	for _, u := range []string{"", "walletobjects.googleapis.com", "ftp://x/y", "http://"} {
		if err := (google.Config{BaseURL: u}).Validate(); err == nil {
			t.Errorf("Validate(%q) = nil, want error", u)
		}
	}
}

func TestClassJSON(t *testing.T) {
	class := google.LoyaltyClass{
		ID:                 testIssuer + ".cartera-gold",
		IssuerName:         "Cartera Shop",
		ProgramName:        "Cartera Rewards",
		ProgramLogo:        &google.Image{SourceURI: google.URI{URI: "https://shop.example/logo.png"}},
		ReviewStatus:       google.ReviewUnderReview,
		RewardsTierLabel:   "Tier",
		RewardsTier:        "Gold",
		HexBackgroundColor: "#b8860b",
	}
	b, err := json.Marshal(class)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"3388000000012345678.cartera-gold","issuerName":"Cartera Shop","programName":"Cartera Rewards",` +
		`"programLogo":{"sourceUri":{"uri":"https://shop.example/logo.png"}},"reviewStatus":"UNDER_REVIEW",` +
		`"rewardsTierLabel":"Tier","rewardsTier":"Gold","hexBackgroundColor":"#b8860b"}`
	if string(b) != want {
		t.Errorf("class JSON:\n%s\nwant:\n%s", b, want)
	}
}

// TestEnsureClass: POST /loyaltyClass with the class; a 409 (the class
// exists) is not an error and leaves it alone; other refusals are.
func TestEnsureClass(t *testing.T) {
	class := google.LoyaltyClass{ID: testIssuer + ".loyalty", IssuerName: "Cartera Shoes", ProgramName: "Rewards", ReviewStatus: google.ReviewUnderReview}
	for _, tc := range []struct {
		name    string
		status  int
		created bool
		wantErr bool
	}{
		{"new", http.StatusOK, true, false},
		{"exists", http.StatusConflict, false, false},
		{"refused", http.StatusForbidden, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeWallet(t)
			f.status = tc.status
			created, err := c.EnsureClass(context.Background(), class)
			if created != tc.created || (err != nil) != tc.wantErr {
				t.Fatalf("created %v, err %v", created, err)
			}
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/walletobjects/v1/loyaltyClass" {
				t.Fatalf("requests = %+v", reqs)
			}
			var got google.LoyaltyClass
			if err := json.Unmarshal(reqs[0].Body, &got); err != nil || got.ID != class.ID || got.ProgramName != "Rewards" {
				t.Errorf("body %s: %v", reqs[0].Body, err)
			}
		})
	}
	if _, err := (&google.Client{Token: func(context.Context) (string, error) { return "", nil }}).EnsureClass(context.Background(), google.LoyaltyClass{ID: "bad"}); err == nil {
		t.Error("an invalid class id was sent")
	}
}
