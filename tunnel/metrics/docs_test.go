package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"stunnel/tunnel"
)

// TestDocumentedMetrics: the metrics table of docs/CONFIGURATION.md is what
// a scrape serves, one table (a blank line ends a Markdown table, and the
// rows after it are no table at all), with the same names, types and label
// names: dashboards and alerts are written from that table.
func TestDocumentedMetrics(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedMetrics(t, string(doc))

	hs := time.Unix(1700000000, 0)
	st := tunnel.Status{Name: "st0", PeerID: "a", PublicKey: "PUB",
		Peers: []tunnel.PeerStatus{{ID: "b", LastHandshake: &hs,
			ResumptionsRefused: map[string]uint64{"ticket expired": 1}}},
		Refusals:           []tunnel.Refusal{{PeerID: "x", Reason: "unknown peer id", Count: 1}},
		ResumptionsRefused: map[string]uint64{"ticket invalid": 1},
		TicketKeys:         []tunnel.TicketKeyStatus{{Name: "aa", State: "encrypt-decrypt"}},
	}
	c := NewCollector(func() tunnel.Status { return st })
	c.CountControlRefused(func() (uint64, uint64) { return 1, 1 }) // as the daemon does
	served := servedMetrics(t, scrape(t, Handler(c, nil)))

	for name, s := range served {
		d, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s (%s %v) is served but not in the metrics table", name, s.typ, s.labels)
		case d.typ != s.typ || !slices.Equal(d.labels, s.labels):
			t.Errorf("%s: documented %s %v, served %s %v", name, d.typ, d.labels, s.typ, s.labels)
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("%s is documented but not served", name)
		}
	}
}

type metricShape struct {
	typ    string
	labels []string // sorted
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	labelValue = regexp.MustCompile(`\([^)]*\)`) // "kind (`full`, `resumed`)": values, not names
)

// documentedMetrics reads the table that starts at the "| metric |" header,
// up to its first line that is not a row.
func documentedMetrics(t *testing.T, doc string) map[string]metricShape {
	t.Helper()
	_, table, ok := strings.Cut(doc, "\n| metric | type | labels | meaning |\n")
	if !ok {
		t.Fatal("no metrics table in docs/CONFIGURATION.md")
	}
	out := map[string]metricShape{}
	for i, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if i == 0 {
			continue // the |---| line
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			t.Fatalf("metrics table row %q", line)
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		var labels []string
		for _, m := range backticked.FindAllStringSubmatch(labelValue.ReplaceAllString(cells[2], ""), -1) {
			labels = append(labels, m[1])
		}
		slices.Sort(labels)
		out[name] = metricShape{strings.TrimSpace(cells[1]), labels}
	}
	return out
}

// servedMetrics reads each family's type and the label names of its first
// sample from the text format.
func servedMetrics(t *testing.T, text string) map[string]metricShape {
	t.Helper()
	out := map[string]metricShape{}
	for _, line := range strings.Split(text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			out[name] = metricShape{typ: typ}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		s, ok := out[name]
		if !ok || s.labels != nil {
			continue
		}
		labels, _, _ := strings.Cut(rest, "}")
		s.labels = []string{}
		for _, kv := range strings.Split(labels, ",") {
			k, _, _ := strings.Cut(kv, "=")
			s.labels = append(s.labels, k)
		}
		slices.Sort(s.labels)
		out[name] = s
	}
	return out
}
