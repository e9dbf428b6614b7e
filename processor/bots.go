package processor

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2/v2"
	"github.com/mileusna/useragent"
)

// botPatternFile is npm isbot's list of generic patterns of crawler,
// monitor, link-preview and HTTP-library user agents (Unlicense), as
// scripts/update-bot-patterns.sh writes it: one JavaScript regular
// expression a line, matched without case anywhere in the user agent.
//
//go:embed data/bot_patterns.txt
var botPatternFile string

// botPatterns is the embedded list, compiled once.
var botPatterns = sync.OnceValue(func() *botMatcher {
	m, err := compileBotPatterns(botPatternFile)
	if err != nil {
		panic(err) // the embedded file is checked by TestBotPatternsCompile
	}
	return m
})

// botMatcher matches a user agent against the pattern list. Most patterns
// are plain regular expressions that RE2 runs in linear time as one
// alternation; the few with look-around, which RE2 lacks, run in a
// backtracking engine with a time limit. Results are remembered per user
// agent, which repeat in real traffic.
type botMatcher struct {
	plain *regexp.Regexp
	look  []*regexp2.Regexp

	mu   sync.Mutex
	seen map[string]string
}

// botCacheSize bounds the remembered user agents; the memory is forgotten
// whole when full (user agents are cut at 512 bytes: about 4 MiB of them
// at most).
const botCacheSize = 8192

// lookTimeout bounds one backtracking match: a user agent built to make a
// pattern backtrack is taken for software, not let to stall the processor.
const lookTimeout = 5 * time.Millisecond

func compileBotPatterns(file string) (*botMatcher, error) {
	var plain []string
	m := &botMatcher{seen: make(map[string]string)}
	for n, line := range strings.Split(file, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "(?=") || strings.Contains(line, "(?!") || strings.Contains(line, "(?<") {
			re, err := regexp2.Compile(line, regexp2.ECMAScript|regexp2.IgnoreCase)
			if err != nil {
				return nil, fmt.Errorf("bot pattern on line %d (%q): %w", n+1, line, err)
			}
			re.MatchTimeout = lookTimeout
			m.look = append(m.look, re)
			continue
		}
		if _, err := regexp.Compile(line); err != nil {
			return nil, fmt.Errorf("bot pattern on line %d (%q): %w", n+1, line, err)
		}
		plain = append(plain, "(?:"+line+")")
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("bot patterns: none in the file")
	}
	var err error
	m.plain, err = regexp.Compile("(?i)" + strings.Join(plain, "|"))
	return m, err
}

// reason says why ua is not a person's browser, or "": a match of the
// patterns first, then the user agent parser. The answer is remembered:
// a user agent seen before costs a map lookup (about 0.1 µs), one never
// seen about 190 µs (BenchmarkBotReason: 0.13 µs and 188 µs).
func (m *botMatcher) reason(ua string) string {
	m.mu.Lock()
	got, ok := m.seen[ua]
	m.mu.Unlock()
	if ok {
		return got
	}
	got = m.decide(ua)
	m.mu.Lock()
	if len(m.seen) >= botCacheSize {
		clear(m.seen)
	}
	m.seen[ua] = got
	m.mu.Unlock()
	return got
}

func (m *botMatcher) decide(ua string) string {
	hit := m.plain.FindString(ua)
	for i := 0; hit == "" && i < len(m.look); i++ {
		found, err := m.look[i].FindStringMatch(ua)
		switch {
		case err != nil:
			return "user agent made a bot pattern time out"
		case found != nil:
			hit = found.String()
		}
	}
	if hit != "" {
		return fmt.Sprintf("user agent matches a bot pattern at %q", hit)
	}
	parsed := useragent.Parse(ua)
	if parsed.Bot {
		return "user agent is the crawler " + parsed.Name
	}
	if parsed.Name == "" || !strings.HasPrefix(ua, "Mozilla/") && !strings.HasPrefix(ua, "Opera/") {
		return "user agent is no known browser"
	}
	return ""
}

// botReason says why a hit's user agent and headers are not a person's
// browser, or "" if they look like one. Every real browser sends a
// User-Agent and an Accept-Language with every request, sendBeacon
// included; a request without either is software. The user agent is then
// held to isbot's patterns, and must parse as a known browser.
func botReason(ua, lang string) string {
	if strings.TrimSpace(ua) == "" {
		return "no User-Agent header"
	}
	if lang == "" {
		return "no Accept-Language header"
	}
	return botPatterns().reason(ua)
}
