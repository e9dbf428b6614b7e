package api

import (
	"net/http"
	"net/netip"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
)

// Learned networks are the installation's IP data, like the ASN data and
// the registry assignments: only the operator's keys see and remove them.

// listLearned lists the networks learned from identifications.
func (s *Server) listLearned(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	if !key.Operator() {
		writeError(w, http.StatusForbidden, "role: learned networks are the installation's; only an operator key sees them")
		return
	}
	out := []*ipintel.LearnedNetwork{}
	if s.learned != nil {
		out = append(out, s.learned.Networks()...)
	}
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, map[string]any{"networks": out})
}

// removeLearned stops a learned network from naming its company.
func (s *Server) removeLearned(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	if !key.Operator() {
		writeError(w, http.StatusForbidden, "role: learned networks are the installation's; only an operator key removes them")
		return
	}
	p, err := netip.ParsePrefix(r.PathValue("network"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "network: not a CIDR such as 198.51.100.0/24")
		return
	}
	removed := false
	if s.learned != nil {
		if removed, err = s.learned.Remove(r.Context(), p, key.ID); err != nil {
			s.log.Error("removing a learned network", "network", p, "err", err)
			writeError(w, http.StatusServiceUnavailable, "learned: cannot be stored now, retry")
			return
		}
	}
	if !removed {
		writeError(w, http.StatusNotFound, "network: not a learned network")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
