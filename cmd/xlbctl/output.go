package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb/xlb/internal/yamljson"
)

// Output formats (-o).
const (
	fmtTable = "table"
	fmtJSON  = "json"
	fmtYAML  = "yaml"
)

// emit writes an API answer in the chosen format: json is the API's JSON
// re-indented, yaml the same document as YAML (keys in the API's order),
// table calls table with the answer decoded into v.
func (a *app) emit(raw []byte, v any, table func(w io.Writer)) error {
	switch a.format {
	case fmtJSON:
		return writeJSON(a.stdout, raw)
	case fmtYAML:
		y, err := jsonToYAML(raw)
		if err != nil {
			return fmt.Errorf("the API's answer is not JSON: %w", err)
		}
		_, err = a.stdout.Write(y)
		return err
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("the API's answer is not what xlbctl expects: %w", err)
		}
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func writeJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the API's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// jsonToYAML renders the API's JSON as YAML with its key names.
func jsonToYAML(raw []byte) ([]byte, error) { return yamljson.FromJSON(raw) }

// yamlToJSON converts a YAML (or JSON) document to JSON.
func yamlToJSON(b []byte) ([]byte, error) { return yamljson.ToJSON(b) }

// row writes one tab-separated table row.
func row(w io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

// hostPort writes addr:port, [v6]:port, or addr:* for port 0 (every port).
func hostPort(addr string, port int) string {
	host := addr
	if a, err := netip.ParseAddr(addr); err == nil && a.Unmap().Is6() {
		host = "[" + a.String() + "]"
	}
	if port == 0 {
		return host + ":*"
	}
	return host + ":" + strconv.Itoa(port)
}

// bytesHuman writes a byte count with a binary unit.
func bytesHuman(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago writes how long before now t was ("-" for the zero time).
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// uptime writes seconds as 3d4h, 2h5m, 4m10s or 12s.
func uptime(sec float64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// clip shortens s to n runes.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// orDash writes "-" for an empty string.
func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
