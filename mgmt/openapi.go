package mgmt

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/version"
)

// schemaTypes are the named schemas of the OpenAPI document, reflected
// from the Go types the handlers encode and decode, so the document
// cannot drift from the code.
var schemaTypes = map[string]any{
	"Service":      ServiceView{},
	"Backend":      BackendView{},
	"BackendPatch": BackendPatch{},
	"Config":       config.File{},
	"Stats":        Stats{},
	"HealthReport": HealthReport{},
	"Lookup":       LookupResult{},
	"Problem":      Problem{},
	"ServiceList": struct {
		Services []ServiceView `json:"services"`
	}{},
	"BackendList": struct {
		Backends []BackendView `json:"backends"`
	}{},
	"FlowList": struct {
		Flows []Flow `json:"flows"`
	}{},
}

// OpenAPI returns the OpenAPI 3.1 document of the API.
func (s *Server) OpenAPI() map[string]any {
	paths := map[string]any{}
	for _, rt := range s.routes {
		item := map[string]any{"summary": rt.summary}
		var params []any
		for _, seg := range strings.Split(rt.pattern, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
			}
		}
		if params != nil {
			item["parameters"] = params
		}
		for m, o := range rt.methods {
			opObj := map[string]any{"summary": o.summary, "operationId": opID(m, rt.pattern)}
			resp := map[string]any{}
			ok := map[string]any{"description": http.StatusText(o.status)}
			if o.resp != "" {
				ct := "application/json"
				var sch any = ref(o.resp)
				switch o.resp {
				case "Text":
					ct, sch = "text/plain", map[string]any{"type": "string"}
				case "Object":
					sch = map[string]any{"type": "object"}
				}
				ok["content"] = map[string]any{ct: map[string]any{"schema": sch}}
			}
			resp[itoa(o.status)] = ok
			problemResp := map[string]any{"description": "problem", "content": map[string]any{"application/problem+json": map[string]any{"schema": ref("Problem")}}}
			resp["default"] = problemResp
			opObj["responses"] = resp
			if o.body != "" {
				content := map[string]any{"application/json": map[string]any{"schema": ref(o.body)}}
				if o.body == "Config" {
					content["application/yaml"] = map[string]any{"schema": ref(o.body)}
				}
				opObj["requestBody"] = map[string]any{"required": true, "content": content}
			}
			if o.change {
				opObj["security"] = []any{map[string]any{"bearer": []any{}}}
			}
			var qp []any
			for _, q := range o.query {
				qp = append(qp, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
			}
			if m == "PUT" || m == "PATCH" || m == "DELETE" {
				qp = append(qp, map[string]any{"name": "If-Match", "in": "header", "schema": map[string]any{"type": "string"}})
			}
			if qp != nil {
				opObj["parameters"] = qp
			}
			item[strings.ToLower(m)] = opObj
		}
		paths[rt.pattern] = item
	}
	schemas := map[string]any{}
	for name, v := range schemaTypes {
		schemas[name] = schemaOf(reflect.TypeOf(v))
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "xlb management API", "version": version.Version,
			"description": "Services, backends, health, counters and flows of an xlb load balancer. Errors are RFC 9457 problem+json. Changes need Authorization: Bearer <token>."},
		"paths": paths,
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func opID(method, pattern string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, seg := range strings.Split(pattern, "/") {
		seg = strings.Trim(seg, "{}")
		seg = strings.NewReplacer(".", "", "_", "").Replace(seg)
		if seg == "" || seg == "api" || seg == "v1" {
			continue
		}
		b.WriteString(strings.ToUpper(seg[:1]) + seg[1:])
	}
	return b.String()
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(config.Duration(0))
	rawType      = reflect.TypeOf(json.RawMessage(nil))
)

// schemaOf reflects a JSON Schema (2020-12, as OpenAPI 3.1 uses) from a
// Go type's encoding/json form.
func schemaOf(t reflect.Type) map[string]any {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case durationType:
		return map[string]any{"type": "string", "description": "a duration like 2s or 1m30s"}
	case rawType:
		return map[string]any{}
	}
	if t.Implements(reflect.TypeOf((*interface{ MarshalText() ([]byte, error) })(nil)).Elem()) {
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem())
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		collectProps(t, props)
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return map[string]any{"type": "object", "properties": props}
	}
	return map[string]any{}
}

// collectProps adds t's JSON fields to props; fields of embedded structs
// are promoted unless a shallower field has the same name.
func collectProps(t reflect.Type, props map[string]any) {
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			embedded = append(embedded, f.Type)
			continue
		}
		if name == "" {
			name = f.Name
		}
		if f.Type == rawType {
			continue // read-only fields accepted and ignored on input
		}
		props[name] = schemaOf(f.Type)
	}
	for _, et := range embedded {
		sub := map[string]any{}
		collectProps(et, sub)
		for k, v := range sub {
			if _, ok := props[k]; !ok {
				props[k] = v
			}
		}
	}
}

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, "", s.OpenAPI())
}
