package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/gofiber/fiber/v2"

	"cartera/profiles"
)

// requestBody returns the body, inflating gzip (as SDKs may send) within
// the batch limit.
func requestBody(c *fiber.Ctx) ([]byte, error) {
	raw := c.Request().Body()
	if len(raw) > profiles.MaxBatchBytes {
		return nil, fmt.Errorf("request body is %d bytes, limit %d: %w", len(raw), profiles.MaxBatchBytes, profiles.ErrTooLarge)
	}
	enc := strings.ToLower(strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)))
	switch enc {
	case "", "identity":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, &httpError{fiber.StatusBadRequest, "body: invalid gzip: " + err.Error()}
		}
		b, err := io.ReadAll(io.LimitReader(zr, profiles.MaxBatchBytes+1))
		if err != nil {
			return nil, &httpError{fiber.StatusBadRequest, "body: invalid gzip: " + err.Error()}
		}
		if len(b) > profiles.MaxBatchBytes {
			return nil, fmt.Errorf("inflated body over %d bytes: %w", profiles.MaxBatchBytes, profiles.ErrTooLarge)
		}
		return b, nil
	default:
		return nil, &httpError{fiber.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: want gzip or none", enc)}
	}
}

// authenticate finds the source by write key: HTTP Basic user name as
// Segment does, a writeKey field in the body, or a writeKey query parameter.
func (a *api) authenticate(c *fiber.Ctx, body []byte) (string, error) {
	key := ""
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return "", &httpError{fiber.StatusUnauthorized, "Authorization: want Basic with the write key as user name"}
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", &httpError{fiber.StatusUnauthorized, "Authorization: invalid base64"}
		}
		key, _, _ = strings.Cut(string(dec), ":")
	}
	if key == "" {
		var w struct {
			WriteKey string `json:"writeKey"`
		}
		_ = json.Unmarshal(body, &w)
		key = w.WriteKey
	}
	if key == "" {
		key = c.Query("writeKey") // RudderStack's beacon and source config
	}
	if key == "" {
		return "", &httpError{fiber.StatusUnauthorized, "missing write key: send it as the HTTP Basic user name or in writeKey"}
	}
	source, ok := a.sources.Authenticate(key)
	if !ok {
		return "", &httpError{fiber.StatusUnauthorized, "unknown write key"}
	}
	return source, nil
}
