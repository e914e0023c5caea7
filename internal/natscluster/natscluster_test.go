package natscluster

import (
	"context"
	"testing"
)

func TestStartRefusesNoServers(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("Start with 0 servers succeeded")
	}
}
