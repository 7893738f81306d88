package ledger

import (
	"context"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RetryPolicy says how often and how far apart a call is sent again. Every wait is bounded by the
// call's overall deadline. A zero field takes DefaultRetryPolicy's value.
type RetryPolicy struct {
	// InitialBackoff bounds the first back-off.
	InitialBackoff time.Duration
	// MaxBackoff: no back-off bound grows beyond this.
	MaxBackoff time.Duration
	// Multiplier: each retry multiplies the bound by this.
	Multiplier float64
	// MaxAttempts: the call is sent at most this many times in all (the first try included).
	MaxAttempts int
	// AttemptTimeout: each try gets at most this long (less if the overall deadline is nearer).
	AttemptTimeout time.Duration
}

// DefaultRetryPolicy is what a zero RetryPolicy means.
var DefaultRetryPolicy = RetryPolicy{
	InitialBackoff: 50 * time.Millisecond,
	MaxBackoff:     2 * time.Second,
	Multiplier:     2,
	MaxAttempts:    10,
	AttemptTimeout: 5 * time.Second,
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultRetryPolicy.InitialBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultRetryPolicy.MaxBackoff
	}
	if p.Multiplier <= 0 {
		p.Multiplier = DefaultRetryPolicy.Multiplier
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetryPolicy.MaxAttempts
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = DefaultRetryPolicy.AttemptTimeout
	}
	return p
}

// PushbackTrailer is the trailer in which a server asks for a wait before the next try (gRFC A6).
const PushbackTrailer = "grpc-retry-pushback-ms"

var pushbackValue = regexp.MustCompile(`^[0-9]+$`)

// Retryable reports whether a call that failed with code is sent again (with the same command
// id). UNAVAILABLE: the server is not ready or does not own the partition. DEADLINE_EXCEEDED: one
// try's own deadline passed (the overall one is checked separately). RESOURCE_EXHAUSTED: the
// command queue is full. Everything else, FAILED_PRECONDITION "too old to deduplicate" included,
// is the server's final answer.
func Retryable(code codes.Code) bool {
	return code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.ResourceExhausted
}

// Clock is the time and dice a retry loop uses; tests pass their own.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
	// Float64 returns a random number in [0, 1), for the jitter.
	Float64() float64
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (realClock) Float64() float64 { return rand.Float64() }

// backoff is "full jitter": a uniformly random wait up to the retry's exponential bound.
func backoff(policy RetryPolicy, retry int, random float64) time.Duration {
	bound := math.Min(float64(policy.MaxBackoff), float64(policy.InitialBackoff)*math.Pow(policy.Multiplier, float64(retry)))
	return time.Duration(random * bound)
}

// pushback is the wait the server asked for in trailer; asked is false if it said nothing, and
// retry is false if it asked not to retry (gRFC A6: a value that is not a non-negative integer).
func pushback(trailer metadata.MD) (wait time.Duration, asked, retry bool) {
	values := trailer.Get(PushbackTrailer)
	if len(values) == 0 {
		return 0, false, true
	}
	if !pushbackValue.MatchString(values[0]) {
		return 0, true, false
	}
	millis, err := strconv.ParseInt(values[0], 10, 64)
	if err != nil || millis > math.MaxInt64/int64(time.Millisecond) {
		return 0, true, false
	}
	return time.Duration(millis) * time.Millisecond, true, true
}

// nextWait is how long to wait before try number tries+1, or false for no further try.
func nextWait(code codes.Code, trailer metadata.MD, tries int, policy RetryPolicy, clock Clock) (time.Duration, bool) {
	if !Retryable(code) || tries >= policy.MaxAttempts {
		return 0, false
	}
	// A full command queue says how long to wait; any retryable answer may.
	if wait, asked, retry := pushback(trailer); asked {
		return wait, retry
	}
	return backoff(policy, tries-1, clock.Float64()), true
}

// send is one try of a unary call, its request already bound.
type send[T any] func(ctx context.Context, options ...grpc.CallOption) (T, error)

// withRetries sends until the call succeeds, fails with a final status, or the next try could not
// start before the overall deadline: ctx's, or now+timeout if ctx has none. Each try gets its own
// deadline (AttemptTimeout). A failure is returned as *Error.
func withRetries[T any](ctx context.Context, r retrier, method, commandID string, call send[T]) (T, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = r.clock.Now().Add(r.timeout)
	}
	for tries := 1; ; tries++ {
		attemptDeadline := r.clock.Now().Add(r.policy.AttemptTimeout)
		if deadline.Before(attemptDeadline) {
			attemptDeadline = deadline
		}
		attemptCtx, cancel := context.WithDeadline(ctx, attemptDeadline)
		var trailer metadata.MD
		answer, err := call(attemptCtx, grpc.Trailer(&trailer))
		cancel()
		if err == nil {
			return answer, nil
		}
		last, isStatus := status.FromError(err)
		if !isStatus {
			return answer, err
		}
		wait, retry := nextWait(last.Code(), trailer, tries, r.policy, r.clock)
		// No retry that could not even start before the deadline, nor once the caller gave up.
		if !retry || ctx.Err() != nil || !r.clock.Now().Add(wait).Before(deadline) {
			return answer, newError(method, last, trailer, tries, commandID)
		}
		if err := r.clock.Sleep(ctx, wait); err != nil {
			return answer, newError(method, status.FromContextError(err), trailer, tries, commandID)
		}
	}
}

// retrier is what withRetries needs of a client.
type retrier struct {
	policy  RetryPolicy
	timeout time.Duration
	clock   Clock
}
