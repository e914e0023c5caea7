package rules

import (
	"strings"
	"testing"
)

func TestInAudienceMustBeDeclared(t *testing.T) {
	specs, err := Parse("a.yaml", []byte("audiences:\n  - name: vip\n    expression: in_audience(\"gold\")\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(specs, EnvOptions{})
	if err == nil || !strings.Contains(err.Error(), `a.yaml:3:17: in_audience: unknown audience "gold"`) {
		t.Fatalf("err = %v", err)
	}
}
