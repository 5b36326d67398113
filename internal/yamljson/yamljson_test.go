package yamljson

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	y := "name: web\nport: 80\nweight: \"100\"\nflag: true\nempty: \"\"\nlist:\n  - a: 1\n  - 2: two\n"
	j, err := ToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"2":"two"`) || !strings.Contains(string(j), `"weight":"100"`) {
		t.Fatalf("ToJSON: %s", j)
	}
	back, err := FromJSON(j)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"weight: \"100\"", "flag: true", "empty: \"\"", "  - a: 1"} {
		if !strings.Contains(string(back), want) {
			t.Fatalf("FromJSON lacks %q:\n%s", want, back)
		}
	}
	if _, err := ToJSON([]byte("a: [")); err == nil {
		t.Fatal("bad YAML accepted")
	}
	if _, err := FromJSON([]byte("{")); err == nil {
		t.Fatal("bad JSON accepted")
	}
}
