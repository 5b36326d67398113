package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/yamljson"
)

// Problem is an RFC 9457 problem details object
// (application/problem+json). Field and Value name the offending
// configuration key (as a path such as backends[1].address) and what was
// written there.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Field    string `json:"field,omitempty"`
	Value    string `json:"value,omitempty"`
	// RestartKeys lists keys whose change needs a restart (409).
	RestartKeys []string `json:"restart_keys,omitempty"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

func problem(status int, format string, args ...any) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}
}

// fieldProblem is a 400 naming the field; prefix is stripped from the
// path so a single object's errors read relative to it.
func fieldProblem(err error, prefix string) *Problem {
	var fe *config.FieldError
	if errors.As(err, &fe) {
		f := strings.TrimPrefix(strings.TrimPrefix(fe.Field, prefix), ".")
		p := problem(http.StatusBadRequest, "%s: %s", orWhole(f), fe.Reason)
		p.Field, p.Value = f, fe.Value
		return p
	}
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return problem(http.StatusBadRequest, "%v", err)
}

func orWhole(f string) string {
	if f == "" {
		return "(document)"
	}
	return f
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// readBody reads a request body of an accepted media type (JSON always;
// YAML when yamlOK) and strictly decodes it into v: unknown keys are
// errors naming the key.
func readBody(w http.ResponseWriter, r *http.Request, v any, yamlOK bool) *Problem {
	ct := r.Header.Get("Content-Type")
	mt := "application/json"
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return problem(http.StatusUnsupportedMediaType, "Content-Type %q cannot be parsed", ct)
		}
	}
	isYAML := mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml"
	if mt != "application/json" && !(yamlOK && isYAML) {
		want := "application/json"
		if yamlOK {
			want += " or application/yaml"
		}
		return problem(http.StatusUnsupportedMediaType, "Content-Type %q: this endpoint takes %s", mt, want)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problem(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBody)
		}
		return problem(http.StatusBadRequest, "reading the body: %v", err)
	}
	if isYAML {
		if body, err = yamljson.ToJSON(body); err != nil {
			return problem(http.StatusBadRequest, "body is not valid YAML: %v", err)
		}
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes JSON into v, refusing unknown keys and trailing data.
func decodeStrict(body []byte, v any) *Problem {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return problem(http.StatusBadRequest, "body has data after the JSON value")
	}
	return nil
}

func jsonProblem(err error) *Problem {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		f := jsonPath(te.Field)
		p := problem(http.StatusBadRequest, "%s: a JSON %s cannot be a %s", orWhole(f), te.Value, kindWord(te.Type.String()))
		p.Field = f
		return p
	case errors.As(err, &se):
		return problem(http.StatusBadRequest, "body is not valid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, "body is empty")
	}
	msg := err.Error()
	if k, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		k = strings.Trim(k, `"`)
		p := problem(http.StatusBadRequest, "%s: unknown key", k)
		p.Field, p.Value = k, k
		return p
	}
	// Errors from UnmarshalText (durations) carry the reason.
	return problem(http.StatusBadRequest, "%s", strings.TrimPrefix(msg, "json: "))
}

// jsonPath drops the Go names of embedded structs ("Service.port" →
// "port") from encoding/json's field paths.
func jsonPath(f string) string {
	var keep []string
	for _, seg := range strings.Split(f, ".") {
		if seg != "" && seg[0] >= 'A' && seg[0] <= 'Z' {
			continue
		}
		keep = append(keep, seg)
	}
	return strings.Join(keep, ".")
}

func kindWord(goType string) string {
	switch {
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "number"
	case goType == "bool":
		return "boolean"
	case goType == "string":
		return "string"
	case strings.HasPrefix(goType, "[]"):
		return "list"
	}
	return "object"
}

// toYAML renders v (a JSON-tagged struct) as YAML with the JSON key names.
func toYAML(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return yamljson.FromJSON(b)
}
