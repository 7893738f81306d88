package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"time"
)

// commandIDPattern is what the servers accept: a UUIDv7 (version 7, variant 10) in canonical
// lowercase text.
var commandIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// NewCommandID returns a fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits,
// with the version (7) and variant (10) set. Make one per intended change, and send it again only
// to retry that change: the server applies a command id once. (github.com/google/uuid >= 1.6 has
// uuid.NewV7; these few lines spare the module a dependency.)
func NewCommandID() string {
	id := make([]byte, 16)
	if _, err := rand.Read(id[6:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	millis := uint64(time.Now().UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(millis >> (40 - 8*i))
	}
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	text := hex.EncodeToString(id)
	return text[0:8] + "-" + text[8:12] + "-" + text[12:16] + "-" + text[16:20] + "-" + text[20:]
}

// IsCommandID reports whether id is a UUIDv7 in the canonical lowercase text the servers accept.
func IsCommandID(id string) bool {
	return commandIDPattern.MatchString(id)
}
