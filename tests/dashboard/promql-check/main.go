// promql-check parses PromQL expressions with Prometheus' own parser (github.com/prometheus/prometheus/promql/parser,
// the grammar the Prometheus server evaluates) and says, for each, why it does not parse, or which metrics it
// selects and which labels it matches on, groups by or joins on.
//
// Input (stdin): a JSON list of expressions. Output (stdout): a JSON list, one object per expression, in order:
//
//	{"expr": "...", "error": "..."}                       when it does not parse
//	{"expr": "...", "selectors": [...], "label_uses": [...]} when it does
//
// selectors: every vector selector, {"metric": name, "labels": [label names its matchers use]} (__name__ left out;
// metric "" when the selector names no metric). label_uses: every grouping and vector matching,
// {"how": "by"|"without"|"on"|"ignoring"|"group_left"|"group_right", "labels": [...], "metrics": [...]}, where
// metrics are the metrics of the series those labels must be on: the aggregated expression for by/without, both
// sides for on/ignoring, the "one" side for group_left/group_right's extra labels.
//
// Exit status 0 whatever the expressions; 2 when the input is not a JSON list of strings.
// Built by scripts/install-promql-check.sh; used by tests/dashboard/dashboard_queries.py.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric string   `json:"metric"`
	Labels []string `json:"labels"`
}

type labelUse struct {
	How     string   `json:"how"`
	Labels  []string `json:"labels"`
	Metrics []string `json:"metrics"`
}

type result struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors,omitempty"`
	LabelUses []labelUse `json:"label_uses,omitempty"`
}

// metricName is the metric a selector selects: its name, or the value of an equality matcher on __name__.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// metricsUnder lists the metrics selected anywhere in the nodes, sorted, each once.
func metricsUnder(nodes ...parser.Node) []string {
	seen := map[string]bool{}
	for _, node := range nodes {
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				seen[metricName(vs)] = true
			}
			return nil
		})
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func sorted(in []string) []string {
	out := append([]string{}, in...)
	sort.Strings(out)
	return out
}

// The parser with the default options: the PromQL a Prometheus server without feature flags accepts (no
// experimental functions, no duration expressions, no extended range selectors).
var promql = parser.NewParser(parser.Options{})

func check(input string) result {
	r := result{Expr: input}
	expr, err := promql.ParseExpr(input)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			names := []string{}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName {
					names = append(names, m.Name)
				}
			}
			r.Selectors = append(r.Selectors, selector{Metric: metricName(n), Labels: sorted(names)})
		case *parser.AggregateExpr:
			if len(n.Grouping) > 0 {
				how := "by"
				if n.Without {
					how = "without"
				}
				r.LabelUses = append(r.LabelUses, labelUse{How: how, Labels: sorted(n.Grouping), Metrics: metricsUnder(n.Expr)})
			}
		case *parser.BinaryExpr:
			vm := n.VectorMatching
			if vm == nil {
				return nil
			}
			if len(vm.MatchingLabels) > 0 {
				how := "ignoring"
				if vm.On {
					how = "on"
				}
				r.LabelUses = append(r.LabelUses, labelUse{How: how, Labels: sorted(vm.MatchingLabels), Metrics: metricsUnder(n.LHS, n.RHS)})
			}
			if len(vm.Include) > 0 {
				switch vm.Card {
				case parser.CardManyToOne:
					r.LabelUses = append(r.LabelUses, labelUse{How: "group_left", Labels: sorted(vm.Include), Metrics: metricsUnder(n.RHS)})
				case parser.CardOneToMany:
					r.LabelUses = append(r.LabelUses, labelUse{How: "group_right", Labels: sorted(vm.Include), Metrics: metricsUnder(n.LHS)})
				}
			}
		}
		return nil
	})
	return r
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: stdin must be a JSON list of strings: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(exprs))
	for _, e := range exprs {
		results = append(results, check(e))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: %v\n", err)
		os.Exit(1)
	}
}
