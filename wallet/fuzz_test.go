package wallet_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"cartera/rules"
	"cartera/wallet"
)

// FuzzParseTemplate: no pass.yaml makes the parser panic, and every error
// is a list of mistakes that point into the file.
func FuzzParseTemplate(f *testing.F) {
	for _, src := range []string{testTemplate, "", "organization: o\ndescription: d\n", "fields: {header: [{key: p, value: profile.computed.points}]}", "colors: {background: \"rgb(1,2,"} {
		f.Add(src)
	}
	specs, err := rules.Parse("rules.yaml", []byte(testRules))
	if err != nil {
		f.Fatal(err)
	}
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		f.Fatal(err)
	}
	name := filepath.Join("loyalty", wallet.TemplateFile)
	f.Fuzz(func(t *testing.T, src string) {
		_, err := wallet.ParseTemplate(name, []byte(src), rs.Env)
		if err == nil {
			return
		}
		var errs rules.FileErrors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("ParseTemplate = %T %v, want rules.FileErrors", err, err)
		}
		for _, e := range errs {
			if e.File != name || e.Line < 1 || e.Col < 1 {
				t.Fatalf("error outside the file: %+v", e)
			}
		}
	})
}

// FuzzWebService drives the pass web service with what a device (or
// anyone) can send: device ids, pass types, serials, authentication and
// push tokens, and passesUpdatedSince tags. Nothing panics, only the
// pass's own token registers a device, and a device registered with a
// valid push token is listed for the pass.
func FuzzWebService(f *testing.F) {
	h := newHarness(f)
	_, p := h.issue("u1")
	ptid := h.chain.PassTypeID
	f.Add("dev1", ptid, p.Serial, p.Token, "aabb", "", true)
	f.Add("dev1", ptid, p.Serial, "wrong-token-wrong-token", "aabb", "0", false)
	f.Add("dev\x00"+ptid, ptid, p.Serial, p.Token, "zz", "99999999999999999999", true)
	f.Add("", "", "", "", "", "-1", false)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, device, passType, serial, token, pushToken, since string, realToken bool) {
		if realToken {
			token = p.Token
		}
		created, err := h.svc.Register(ctx, device, passType, serial, token, pushToken)
		if err == nil && (token != p.Token || serial != p.Serial || passType != ptid) {
			t.Fatalf("registered with pass %q/%q and token %q (created %v)", passType, serial, token, created)
		}
		if err != nil && !errors.Is(err, wallet.ErrUnauthorized) && !errors.Is(err, wallet.ErrInvalid) && !errors.Is(err, wallet.ErrNotFound) {
			t.Fatalf("Register: unexpected error %v", err)
		}
		serials, _, uerr := h.svc.Updated(device, passType, since)
		if uerr != nil {
			t.Fatalf("Updated: %v", uerr)
		}
		if err == nil && since == "" && !slices.Contains(serials, p.Serial) {
			t.Fatalf("device %q registered but lists %v", device, serials)
		}
		if err == nil {
			if err := h.svc.Unregister(ctx, device, passType, serial, token); err != nil {
				t.Fatalf("Unregister: %v", err)
			}
		}
	})
}
