package web

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
)

// TestAlertListPages follows next_before through a filtered list and
// checks the match counts the list carries.
func TestAlertListPages(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var ms []vigil.Alert
	for i := range 7 {
		// Two hosts; on h1 one process name per alert, on h2 all the same
		// (folded into one alert by dedupe).
		host, name := "h1", fmt.Sprint("p", i)
		if i >= 4 {
			host, name = "h2", "same"
		}
		ms = append(ms, vigil.Alert{RuleID: "r", HostID: host, Hostname: "web-" + host, EventID: fmt.Sprint("e", i),
			Fields: map[string]any{"process_name": name}})
	}
	if _, _, _, err := e.db.CommitMatches(ctx, "r", "process_creation", 7, ms, []string{"process_name"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Alerts []struct {
			ID         int64  `json:"id"`
			HostID     string `json:"host_id"`
			MatchCount int64  `json:"match_count"`
		} `json:"alerts"`
		NextBefore int64 `json:"next_before"`
	}
	get := func(q string) page {
		var p page
		r := e.do("GET", "/api/v1/alerts?"+q, e.tokens[state.RoleViewer], nil)
		if r.status != 200 {
			t.Fatalf("GET alerts?%s: %d %s", q, r.status, r.body)
		}
		r.decode(t, &p)
		return p
	}
	var ids []int64
	counts := map[string]int64{}
	q := "rule=r&limit=2"
	for n := 0; n < 10; n++ {
		p := get(q)
		for _, a := range p.Alerts {
			ids = append(ids, a.ID)
			counts[a.HostID] += a.MatchCount
		}
		if p.NextBefore == 0 {
			break
		}
		if last := p.Alerts[len(p.Alerts)-1].ID; p.NextBefore != last {
			t.Errorf("next_before %d, want the last alert of the page %d", p.NextBefore, last)
		}
		q = fmt.Sprint("rule=r&limit=2&before=", p.NextBefore)
	}
	// Five alerts: four on h1, one on h2 holding three matches.
	if len(ids) != 5 || ids[0] <= ids[4] || counts["h1"] != 4 || counts["h2"] != 3 {
		t.Errorf("paged ids %v, match counts %v: want 5 alerts newest first, h1 4 matches, h2 3", ids, counts)
	}
	// A page that ends exactly at the last alert says there may be more;
	// the next is empty and says there is not.
	if p := get(fmt.Sprint("rule=r&limit=5")); p.NextBefore == 0 || len(get(fmt.Sprint("rule=r&before=", p.NextBefore)).Alerts) != 0 {
		t.Errorf("full last page: %+v", p)
	}
	for _, c := range []struct{ q, want string }{
		{"before=abc", "before"},
		{"before=0", "before"},
		{"before=999999", "999999"},
	} {
		r := e.do("GET", "/api/v1/alerts?"+c.q, e.tokens[state.RoleViewer], nil)
		if r.status != 400 || !strings.Contains(r.errorMsg(), c.want) {
			t.Errorf("GET alerts?%s = %d %s, want 400 mentioning %q", c.q, r.status, r.body, c.want)
		}
	}
}
