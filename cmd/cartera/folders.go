package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Folders is a config setting that names one folder or several:
//
//	journeys: journeys
//	journeys: [journeys, ../marketing/journeys]
//
// so a team can keep its own files beside the examples' without copying
// them. Each folder is relative to the config file.
type Folders []string

// UnmarshalYAML accepts a string or a list of strings.
func (f *Folders) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*f = nil
			return nil
		}
		*f = Folders{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Folders, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.Value == "" {
				return fmt.Errorf("line %d: want a folder name", item.Line)
			}
			out = append(out, item.Value)
		}
		*f = out
		return nil
	}
	return fmt.Errorf("line %d: want a folder or a list of folders", n.Line)
}

// parseFolders reads a comma-separated list of folders (a flag or an
// environment variable), empty entries left out.
func parseFolders(s string) Folders {
	var out Folders
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// relativeTo makes each relative folder relative to dir.
func (f Folders) relativeTo(dir string) Folders {
	out := make(Folders, len(f))
	for i, p := range f {
		if p != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		out[i] = p
	}
	return out
}
