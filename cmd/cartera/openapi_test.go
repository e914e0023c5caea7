package main

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

const openapiPath = "../../docs/openapi.yaml"

// openapiDoc is the part of docs/openapi.yaml the test checks.
type openapiDoc struct {
	OpenAPI    string                     `yaml:"openapi"`
	Paths      map[string]openapiPathItem `yaml:"paths"`
	Components struct {
		Parameters map[string]openapiParam `yaml:"parameters"`
	} `yaml:"components"`
}

// openapiPathItem holds a path's parameters and its operations by method.
type openapiPathItem struct {
	Parameters []openapiParam
	Operations map[string]openapiOperation
}

func (p *openapiPathItem) UnmarshalYAML(n *yaml.Node) error {
	var raw map[string]yaml.Node
	if err := n.Decode(&raw); err != nil {
		return err
	}
	p.Operations = map[string]openapiOperation{}
	for key, v := range raw {
		switch key {
		case "parameters":
			if err := v.Decode(&p.Parameters); err != nil {
				return err
			}
		case "get", "put", "post", "delete", "options", "head", "patch", "trace":
			var op openapiOperation
			if err := v.Decode(&op); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			p.Operations[strings.ToUpper(key)] = op
		case "summary", "description", "servers":
		default:
			return fmt.Errorf("line %d: unknown path item field %q", v.Line, key)
		}
	}
	return nil
}

type openapiOperation struct {
	Summary    string         `yaml:"summary"`
	Parameters []openapiParam `yaml:"parameters"`
	Responses  map[string]any `yaml:"responses"`
}

type openapiParam struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

// routeKey is a route with its path parameters blanked, so that Fiber's
// "/v1/profiles/:ident" (the identifier is "kind:value") and OpenAPI's
// "/v1/profiles/{kind}:{value}" meet as "/v1/profiles/{}".
func routeKey(method string, segs []string) string {
	return method + " /" + strings.Join(segs, "/")
}

// fiberRoute normalizes a Fiber path: a segment that starts with a
// parameter (":name", or a "*" / "+" wildcard) is one parameter.
func fiberRoute(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") || strings.HasPrefix(s, "+") {
			segs[i] = "{}"
		}
	}
	return routeKey(method, segs)
}

// openapiRoute normalizes an OpenAPI path: a segment holding any
// {template} is one parameter.
func openapiRoute(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if strings.Contains(s, "{") {
			segs[i] = "{}"
		}
	}
	return routeKey(method, segs)
}

var templateParam = regexp.MustCompile(`\{([^{}]+)\}`)

func loadOpenAPI(t *testing.T) (*openapiDoc, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(openapiPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc openapiDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", openapiPath, err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		t.Fatalf("%s: %v", openapiPath, err)
	}
	return &doc, tree
}

// TestOpenAPIMatchesRoutes fails naming every route that the app registers
// and docs/openapi.yaml does not describe, and the other way round.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi: %q, want 3.1.x", doc.OpenAPI)
	}

	// The routes as registered. Fiber adds HEAD to every GET by itself;
	// the document lists the GET.
	app := (&api{gather: prometheus.NewRegistry()}).routes()
	registered := map[string]string{} // key → "METHOD path" as declared
	gets := map[string]bool{}
	routes := app.GetRoutes(true)
	for _, r := range routes {
		if r.Method == "GET" {
			gets[r.Path] = true
		}
	}
	for _, r := range routes {
		if r.Method == "HEAD" && gets[r.Path] {
			continue
		}
		registered[fiberRoute(r.Method, r.Path)] = r.Method + " " + r.Path
	}

	documented := map[string]string{}
	for path, item := range doc.Paths {
		for method := range item.Operations {
			key := openapiRoute(method, path)
			if prev, dup := documented[key]; dup {
				t.Errorf("docs/openapi.yaml: %s %s and %s are the same route", method, path, prev)
			}
			documented[key] = method + " " + path
		}
	}

	for _, key := range slices.Sorted(maps.Keys(registered)) {
		if _, ok := documented[key]; !ok {
			t.Errorf("route %s is registered but not described in docs/openapi.yaml", registered[key])
		}
	}
	for _, key := range slices.Sorted(maps.Keys(documented)) {
		if _, ok := registered[key]; !ok {
			t.Errorf("docs/openapi.yaml describes %s, but no such route is registered", documented[key])
		}
	}
}

// TestOpenAPIOperations checks each operation has a summary and a
// response, and that path templates and path parameters agree.
func TestOpenAPIOperations(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	resolve := func(p openapiParam) openapiParam {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			return doc.Components.Parameters[name]
		}
		return p
	}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		item := doc.Paths[path]
		var inTemplate []string
		for _, m := range templateParam.FindAllStringSubmatch(path, -1) {
			inTemplate = append(inTemplate, m[1])
		}
		slices.Sort(inTemplate)
		for _, method := range slices.Sorted(maps.Keys(item.Operations)) {
			op := item.Operations[method]
			where := method + " " + path
			if strings.TrimSpace(op.Summary) == "" {
				t.Errorf("%s: no summary", where)
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s: no responses", where)
			}
			var declared []string
			for _, p := range slices.Concat(item.Parameters, op.Parameters) {
				p = resolve(p)
				if p.Name == "" {
					t.Errorf("%s: a parameter without a name (unresolved $ref?)", where)
				}
				if p.In == "path" {
					declared = append(declared, p.Name)
				}
			}
			slices.Sort(declared)
			if !slices.Equal(declared, inTemplate) {
				t.Errorf("%s: path parameters %v, but the path holds %v", where, declared, inTemplate)
			}
		}
	}
}

// TestOpenAPIRefs checks every local $ref points at something.
func TestOpenAPIRefs(t *testing.T) {
	_, tree := loadOpenAPI(t)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); k == "$ref" && ok {
					if !resolves(tree, ref) {
						t.Errorf("$ref %q points at nothing", ref)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(tree)
}

func resolves(tree map[string]any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = tree
	for part := range strings.SplitSeq(rest, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
