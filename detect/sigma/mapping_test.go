package sigma_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
)

// ComputerName (and Computer) name the event's host in every table, with
// both mappings, for detection and for correlation group-by.
func TestHostFields(t *testing.T) {
	rules := parseRules(t, `
title: On web hosts
id: 1b6e4a52-0c43-4d6f-9a52-2f0e4bb1b3a1
logsource: {product: linux, category: process_creation}
detection:
  sel:
    ComputerName|startswith: web
    Image|endswith: /curl
  condition: sel
---
title: Curl bursts
correlation:
  type: event_count
  rules: [1b6e4a52-0c43-4d6f-9a52-2f0e4bb1b3a1]
  group-by: [Computer]
  timespan: 1m
  condition: {gte: 2}
`)
	for _, m := range []sigma.Mapping{sigma.SchemaMapping{}, sigma.CatalogMapping{}} {
		evs := readEvents(t,
			`{"id": "w1", "ComputerName": "WEB01", "Image": "/usr/bin/curl", "timestamp": "2026-01-02T03:04:05Z"}`,
			`{"id": "d1", "ComputerName": "db01", "Image": "/usr/bin/curl", "timestamp": "2026-01-02T03:04:06Z"}`,
			`{"id": "w2", "Computer": "web01", "Image": "/usr/bin/curl", "timestamp": "2026-01-02T03:04:07Z"}`,
			`{"id": "w3", "ComputerName": "WEB01", "Image": "/usr/bin/curl", "timestamp": "2026-01-02T03:04:08Z"}`,
		)
		out, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, evs, sigma.Options{Mapping: m})
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		var hits, alerts []string
		for _, h := range out.Hits {
			hits = append(hits, h.Event.ID)
		}
		for _, a := range out.Alerts {
			alerts = append(alerts, a.Event.ID+"@"+a.Group[0].Value.(string))
		}
		if strings.Join(hits, ",") != "w1,w2,w3" {
			t.Errorf("%T: hits %v, want w1,w2,w3", m, hits)
		}
		// WEB01 and web01 are two groups, as for any field.
		if strings.Join(alerts, ",") != "w3@WEB01" {
			t.Errorf("%T: alerts %v, want w3@WEB01", m, alerts)
		}
	}
	// Hostname is not a host field: in some logsources it is another host.
	r := parseRules(t, `
title: x
logsource: {category: process_creation}
detection: {sel: {Hostname: a}, condition: sel}
`)[0]
	if _, err := sigma.Compile(r, sigma.Options{}); err == nil || !strings.Contains(err.Error(), `field "Hostname" has no column`) {
		t.Errorf("Hostname: %v", err)
	}
}

// taxonomy is read; a field the mapping does not know names the taxonomy.
func TestTaxonomy(t *testing.T) {
	r := parseRules(t, `
title: ECS names
taxonomy: ecs
logsource: {category: process_creation}
detection: {sel: {process.executable: /usr/bin/curl}, condition: sel}
`)[0]
	if r.Taxonomy != "ecs" {
		t.Errorf("taxonomy %q", r.Taxonomy)
	}
	_, err := sigma.Compile(r, sigma.Options{})
	if err == nil || !strings.Contains(err.Error(), `field "process.executable" has no column in table process_creation (the rule uses taxonomy "ecs"`) {
		t.Errorf("compile: %v", err)
	}
	_, errs := sigma.Parse("x.yml", []byte("title: x\ntaxonomy: [a]\nlogsource: {category: process_creation}\ndetection: {s: {Image: a}, condition: s}\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "x.yml:2:11: taxonomy must be a string") {
		t.Errorf("bad taxonomy: %v", errs)
	}
}
