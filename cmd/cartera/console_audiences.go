package main

import (
	"cartera/cmd/cartera/console"
	"cartera/journeys"
)

// AdAudiences lists the policies' ad audiences in force, with their sizes
// and the journey steps that add people to each and take them out.
func (b consoleBackend) AdAudiences() ([]console.AdAudience, error) {
	set := b.a.core.journeys.Set()
	sizes, err := b.a.core.journeys.AdAudienceSizes()
	if err != nil {
		return nil, err
	}
	out := make([]console.AdAudience, 0, len(set.Policy.AdAudiences))
	for _, a := range set.Policy.AdAudiences {
		v := console.AdAudience{Name: a.Name, Description: a.Description, Size: sizes[a.Name]}
		for _, j := range set.Journeys {
			for _, st := range j.Steps {
				if st.Add == a.Name {
					v.AddedBy = append(v.AddedBy, j.ID+"/"+st.ID)
				}
				if st.Remove == a.Name {
					v.RemovedBy = append(v.RemovedBy, j.ID+"/"+st.ID)
				}
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// AdMembers is journeys.Engine.AdMembers.
func (b consoleBackend) AdMembers(audience, after string, limit int) ([]journeys.AdMember, string, error) {
	return b.a.core.journeys.AdMembers(audience, after, limit)
}
