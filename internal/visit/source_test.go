package visit

import "testing"

func TestSource(t *testing.T) {
	for _, tc := range []struct{ url, ref, want string }{
		{"https://acme.example/", "", "direct"},
		{"https://acme.example/pricing", "https://acme.example/", "direct"},
		{"https://acme.example/?utm_source=newsletter&utm_medium=email", "", "campaign"},
		{"https://acme.example/?gclid=abc", "https://www.google.com/", "campaign"},
		{"https://acme.example/", "https://www.google.de/", "search"},
		{"https://acme.example/", "https://duckduckgo.com/", "search"},
		{"https://acme.example/", "https://www.linkedin.com/feed/", "social"},
		{"https://acme.example/", "https://t.co/abc", "social"},
		{"https://acme.example/", "https://news.ycombinator.com/item?id=1", "social"},
		{"https://acme.example/", "https://blog.partner.example/post", "referral"},
		{"https://acme.example/", "android-app://com.slack/", "referral"},
		{"https://acme.example/", "https://t.contoso.com/", "referral"},
		{"https://acme.example/", "https://crabbing.com/", "referral"},
		{"https://acme.example/", "https://www.google.co.uk/search?q=x", "search"},
		{"https://acme.example/", "https://m.facebook.com/", "social"},
	} {
		if got := Source(tc.url, tc.ref); got != tc.want {
			t.Errorf("Source(%s, %s) = %s, want %s", tc.url, tc.ref, got, tc.want)
		}
	}
}
