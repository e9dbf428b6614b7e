package testenv

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Chromium is the browser binary: LEADPIPE_CHROMIUM, else Debian's, which
// `make test` installs. Its absence fails the test.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("LEADPIPE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: run `make setup` (it installs Debian's chromium) or set LEADPIPE_CHROMIUM")
	return ""
}

// Browser starts a headless Chromium with a fresh profile and returns a tab,
// closed when the test ends. Focus is emulated (headless tabs have none).
func Browser(t testing.TB) context.Context {
	t.Helper()
	Slow(t, "drives headless Chromium")
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser is stopped, so its removal
	// is retried (this cleanup runs after the ones below).
	profile, err := os.MkdirTemp("", "leadpipe-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("removing the Chromium profile %s: still busy after 5s", profile)
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first Run starts the browser and binds it to tab.
	if err := chromedp.Run(tab, emulation.SetFocusEmulationEnabled(true)); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return tab
}

// Run runs actions in a tab of Browser, failing the test on an error or
// when they take longer than 30 seconds.
func Run(t testing.TB, tab context.Context, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}
