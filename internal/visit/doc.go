// Package visit holds what defines a visit, shared by the processor that
// assigns hits to visits and the API that reads them: the inactivity gap
// that ends a visit, and how the traffic source of a visit is classified.
//
// It imports nothing of leadpipe's.
package visit

import "time"

// Gap is the inactivity that ends a visit, as in web analytics at large
// (Google Analytics, Plausible, Matomo): a hit more than Gap after the
// visitor's previous one starts a new visit.
const Gap = 30 * time.Minute
