package control

import (
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

// Carve limits (Options.MaxCarveBytes, Options.MaxCarveBlockBytes).
const (
	DefaultMaxCarveBytes      = 512 << 20
	DefaultMaxCarveBlockBytes = 8 << 20
)

// carveBeginRequest is osquery's carve/begin body (carver.cpp); numbers
// come as numbers or strings depending on the version.
type carveBeginRequest struct {
	BlockCount osquery.Int `json:"block_count"`
	BlockSize  osquery.Int `json:"block_size"`
	CarveSize  osquery.Int `json:"carve_size"`
	CarveID    string      `json:"carve_id"`
	RequestID  string      `json:"request_id"`
	NodeKey    string      `json:"node_key"`
}

type carveBeginResponse struct {
	Success   bool   `json:"success"`
	SessionID string `json:"session_id"`
}

// carveBlockRequest is osquery's carve/block body: one base64 block. The
// session id is the credential (osquery does not send the node key here).
type carveBlockRequest struct {
	BlockID   osquery.Int `json:"block_id"`
	SessionID string      `json:"session_id"`
	RequestID string      `json:"request_id"`
	Data      string      `json:"data"`
	NodeKey   string      `json:"node_key,omitempty"`
}

func (s *Server) handleCarveBegin(w http.ResponseWriter, r *http.Request) {
	var req carveBeginRequest
	h, ok := s.readNode(w, r, s.opts.MaxOtherBodyBytes, &req, &req.NodeKey)
	if !ok {
		return
	}
	size, bs, n := int64(req.CarveSize), int64(req.BlockSize), int64(req.BlockCount)
	switch {
	case size <= 0 || bs <= 0:
		s.fail(w, r, badRequest("carve_size %d and block_size %d must be positive", size, bs))
		return
	case size > s.opts.MaxCarveBytes:
		s.fail(w, r, badRequest("carve_size %d exceeds the server's limit of %d bytes", size, s.opts.MaxCarveBytes))
		return
	case bs > s.opts.MaxCarveBlockBytes:
		s.fail(w, r, badRequest("block_size %d exceeds the server's limit of %d bytes (lower --carver_block_size)", bs, s.opts.MaxCarveBlockBytes))
		return
	case n != (size+bs-1)/bs:
		s.fail(w, r, badRequest("block_count %d does not fit carve_size %d in blocks of %d (want %d)", n, size, bs, (size+bs-1)/bs))
		return
	}
	c, session, err := s.db.BeginCarve(r.Context(), state.Carve{HostID: h.ID, CarveID: req.CarveID, RequestID: req.RequestID,
		BlockCount: int(n), BlockSize: int(bs), CarveSize: size, CreatedAt: s.now()})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.Info("carve started", "carve", c.ID, "host_id", h.ID, "bytes", size, "blocks", n, "request_id", req.RequestID)
	writeJSON(w, http.StatusOK, carveBeginResponse{Success: true, SessionID: session})
}

func (s *Server) handleCarveBlock(w http.ResponseWriter, r *http.Request) {
	var req carveBlockRequest
	// base64 is 4/3 of the block, plus room for the other fields.
	if err := readJSON(r, s.opts.MaxCarveBlockBytes/3*4+8<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.db.CarveBySession(r.Context(), req.SessionID)
	if errors.Is(err, vigil.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown carve session_id"})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.NodeKey != "" {
		h, err := s.db.HostByNodeKey(r.Context(), req.NodeKey)
		if err != nil || h.ID != c.HostID {
			writeJSON(w, http.StatusForbidden, errorBody{Error: "the node key does not own this carve session"})
			return
		}
	}
	s.touch(c.HostID, r.RemoteAddr)
	id := int(req.BlockID)
	if id < 0 || id >= c.BlockCount {
		s.fail(w, r, badRequest("block_id %d out of range: the carve has blocks 0 to %d", id, c.BlockCount-1))
		return
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		s.fail(w, r, badRequest("data is not base64: %v", err))
		return
	}
	want := int64(c.BlockSize)
	if id == c.BlockCount-1 {
		want = c.CarveSize - int64(c.BlockCount-1)*int64(c.BlockSize)
	}
	if int64(len(data)) != want {
		s.fail(w, r, badRequest("block %d has %d bytes, want %d", id, len(data), want))
		return
	}
	c, err = s.db.PutCarveBlock(r.Context(), c.ID, id, data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.stats.carveBlocks.Add(1)
	if c.Received == c.BlockCount {
		s.logger.Info("carve complete", "carve", c.ID, "host_id", c.HostID, "bytes", c.CarveSize)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}
