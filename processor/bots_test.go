package processor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/leadpipe/leadpipe/internal/cache"
)

func TestBotReason(t *testing.T) {
	browsers := []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	}
	for _, ua := range browsers {
		if r := botReason(ua, "en-US"); r != "" {
			t.Errorf("browser %q taken for a bot: %s", ua, r)
		}
		if r := botReason(ua, ""); r != "no Accept-Language header" {
			t.Errorf("browser UA without Accept-Language: %q", r)
		}
	}
	bots := []string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
		"Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
		"curl/8.5.0", "Wget/1.21.4", "python-requests/2.32.3", "Go-http-client/1.1", "Java/17.0.2", "okhttp/4.12.0",
		"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
		"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
		"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
		"Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
		"Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0; http://www.example.com/scanner)",
		"something-unknown/1.0",
	}
	for _, ua := range bots {
		if r := botReason(ua, "en"); r == "" {
			t.Errorf("bot %q taken for a browser", ua)
		}
	}
	if r := botReason("", "en"); r != "no User-Agent header" {
		t.Errorf("empty UA: %q", r)
	}
}

// TestBotPatternsCompile holds the embedded list to compiling whole: every
// pattern in one of the two engines, none dropped.
func TestBotPatternsCompile(t *testing.T) {
	m, err := compileBotPatterns(botPatternFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.look) == 0 || m.plain.NumSubexp() != 0 {
		t.Errorf("look-around patterns %d, capture groups %d", len(m.look), m.plain.NumSubexp())
	}
	if _, err := compileBotPatterns("# only a comment\n"); err == nil {
		t.Error("a file without patterns compiled")
	}
	if _, err := compileBotPatterns("(unclosed\n"); err == nil {
		t.Error("a broken pattern compiled")
	}
}

// TestBotFilterOnHeldOutAgents measures the filter against samples it was
// not made from (scripts/setup.sh fetches them): the crawler-user-agents
// project's real crawler and monitor user agents must be taken for bots at
// least 98% of the time, and none of the most common browsers' user
// agents (top-user-agents) may be.
func TestBotFilterOnHeldOutAgents(t *testing.T) {
	var crawlers []struct {
		Pattern   string
		Instances []string
	}
	var browsers []string
	for name, into := range map[string]any{"crawler-user-agents.json": &crawlers, "top-user-agents.json": &browsers} {
		b, err := os.ReadFile(filepath.Join(cache.EvalDir(), name))
		if err != nil {
			t.Fatalf("%v: run `make setup`", err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	total, caught := 0, 0
	for _, c := range crawlers {
		for _, ua := range c.Instances {
			total++
			if botReason(ua, "en") != "" {
				caught++
			} else {
				t.Logf("missed (%s): %s", c.Pattern, ua)
			}
		}
	}
	if total < 1000 || len(browsers) < 50 {
		t.Fatalf("samples too small: %d crawler agents, %d browsers", total, len(browsers))
	}
	share := float64(caught) / float64(total)
	t.Logf("crawler agents taken for bots: %d of %d (%.2f%%)", caught, total, 100*share)
	if share < 0.98 {
		t.Errorf("%.2f%% of crawler agents taken for bots, want at least 98%%", 100*share)
	}
	for _, ua := range browsers {
		if r := botReason(ua, "en-GB"); r != "" {
			t.Errorf("browser taken for a bot (%s): %s", r, ua)
		}
	}
}

// BenchmarkBotReason is the cost per hit of a browser's user agent the
// filter has not seen before (the cache's miss path) and has (its hit path).
func BenchmarkBotReason(b *testing.B) {
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	b.Run("miss", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			botReason(ua+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26)), "en")
		}
	})
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			botReason(ua, "en")
		}
	})
}
