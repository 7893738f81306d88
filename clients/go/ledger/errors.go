package ledger

import (
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrNotAnAmount is wrapped by the error a command returns, before sending anything, for an
// amount that is not a decimal string such as "12.34".
var ErrNotAnAmount = errors.New(`an amount is a decimal string such as "12.34" (digits, an optional "." and more digits)`)

// ErrNotACommandID is wrapped by the error a command returns, before sending anything, for a
// command id (WithCommandID) that is not a UUIDv7 in canonical lowercase text.
var ErrNotACommandID = errors.New("a command id is a UUIDv7 in canonical lowercase text (NewCommandID)")

var tooOld = regexp.MustCompile(`(?i)too old to deduplicate`)

// Error is a call that failed for good: the server's last status, after Attempts tries.
// status.Code(err) and status.FromError(err) see the server's code and message.
type Error struct {
	// Method is the RPC's name, e.g. "Deposit".
	Method  string
	Code    codes.Code
	Details string
	// Trailer is the last try's trailing metadata.
	Trailer metadata.MD
	// Attempts is how many times the call was sent, retries included.
	Attempts int
	// CommandID is the command's id (empty for queries): sending the command again with it,
	// WithCommandID, is safe.
	CommandID string
	status    *status.Status
}

func (e *Error) Error() string {
	text := fmt.Sprintf("%s: %s: %s", e.Method, e.Code, e.Details)
	if e.Attempts > 1 {
		text += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return text
}

// GRPCStatus lets status.FromError and status.Code read the server's status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// TooOldToDeduplicate reports the server's answer that it no longer remembers this command id, so
// cannot tell whether the command was applied: read the account (ListTransactions shows each
// movement's command id) before deciding to send a new command, with a new id.
func (e *Error) TooOldToDeduplicate() bool {
	return e.Code == codes.FailedPrecondition && tooOld.MatchString(e.Details)
}

func newError(method string, last *status.Status, trailer metadata.MD, attempts int, commandID string) *Error {
	return &Error{
		Method:    method,
		Code:      last.Code(),
		Details:   last.Message(),
		Trailer:   trailer,
		Attempts:  attempts,
		CommandID: commandID,
		status:    last,
	}
}
