package ledger

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var background = context.Background()

func ms(values ...int) []time.Duration {
	durations := make([]time.Duration, len(values))
	for i, v := range values {
		durations[i] = time.Duration(v) * time.Millisecond
	}
	return durations
}

// ledgerError is err as *Error, failing the test if it is not one.
func ledgerError(t *testing.T, err error) *Error {
	t.Helper()
	var failed *Error
	if !errors.As(err, &failed) {
		t.Fatalf("want *ledger.Error, got %T: %v", err, err)
	}
	return failed
}

func TestRetriesUnavailableAndDeadlineExceededWithTheSameCommandID(t *testing.T) {
	client, server, _ := fakeClient(t, Config{},
		failure(codes.Unavailable, "not ready"), failure(codes.DeadlineExceeded, "slow"), accepted)
	result, err := client.Deposit(background, "acc-1", "12.34")
	if err != nil {
		t.Fatal(err)
	}
	if result.Version != 2 || !IsCommandID(result.CommandID) {
		t.Fatalf("result %+v", result)
	}
	want := []string{result.CommandID, result.CommandID, result.CommandID}
	if ids := server.commandIDs(); !reflect.DeepEqual(ids, want) {
		t.Fatalf("sent ids %v, want %v", ids, want)
	}
	if amount := server.sent[2].request.(interface{ GetAmount() string }).GetAmount(); amount != "12.34" {
		t.Fatalf("sent amount %q", amount)
	}
}

func TestWaitsAFullJitterBackOffThatGrowsWithEachRetry(t *testing.T) {
	clock := newFakeClock(0.5, 0.5, 0.5)
	client, _, _ := fakeClient(t, Config{Clock: clock, Retry: RetryPolicy{InitialBackoff: 100 * time.Millisecond, Multiplier: 2, MaxBackoff: 300 * time.Millisecond}},
		failure(codes.Unavailable, ""), failure(codes.Unavailable, ""), failure(codes.Unavailable, ""), accepted)
	if _, err := client.Deposit(background, "acc-1", "1"); err != nil {
		t.Fatal(err)
	}
	// Half of 100, 200, then of the 300 cap.
	if want := ms(50, 100, 150); !reflect.DeepEqual(clock.sleeps, want) {
		t.Fatalf("slept %v, want %v", clock.sleeps, want)
	}
}

func TestFullJitterMayWaitAnythingFromNothingToTheBound(t *testing.T) {
	clock := newFakeClock(0, 0.999)
	client, _, _ := fakeClient(t, Config{Clock: clock, Retry: RetryPolicy{InitialBackoff: time.Second, Multiplier: 1}},
		failure(codes.Unavailable, ""), failure(codes.Unavailable, ""), accepted)
	if _, err := client.Deposit(background, "acc-1", "1"); err != nil {
		t.Fatal(err)
	}
	if want := ms(0, 999); !reflect.DeepEqual(clock.sleeps, want) {
		t.Fatalf("slept %v, want %v", clock.sleeps, want)
	}
}

func TestAFullQueueIsRetriedWithTheSameIDAfterTheServersPushback(t *testing.T) {
	client, server, clock := fakeClient(t, Config{},
		failure(codes.ResourceExhausted, "command queue full", PushbackTrailer, "700"), accepted)
	result, err := client.Withdraw(background, "acc-1", "5.00")
	if err != nil {
		t.Fatal(err)
	}
	if want := ms(700); !reflect.DeepEqual(clock.sleeps, want) {
		t.Fatalf("slept %v, want %v", clock.sleeps, want)
	}
	if ids := server.commandIDs(); !reflect.DeepEqual(ids, []string{result.CommandID, result.CommandID}) {
		t.Fatalf("sent ids %v", ids)
	}
}

func TestAPushbackThatIsNotANonNegativeIntegerMeansDoNotRetry(t *testing.T) {
	for _, pushback := range []string{"-1", "soon", "+5", "99999999999999999999"} {
		client, server, _ := fakeClient(t, Config{},
			failure(codes.ResourceExhausted, "full", PushbackTrailer, pushback), accepted)
		_, err := client.Deposit(background, "acc-1", "1")
		if failed := ledgerError(t, err); failed.Code != codes.ResourceExhausted || failed.Attempts != 1 {
			t.Fatalf("pushback %q: %v", pushback, err)
		}
		if len(server.sent) != 1 {
			t.Fatalf("pushback %q: sent %d times", pushback, len(server.sent))
		}
	}
}

func TestAPushbackBeyondTheDeadlineFailsNowRatherThanSleepingPastIt(t *testing.T) {
	client, server, clock := fakeClient(t, Config{Timeout: time.Second},
		failure(codes.ResourceExhausted, "full", PushbackTrailer, "5000"), accepted)
	_, err := client.Deposit(background, "acc-1", "1")
	if failed := ledgerError(t, err); failed.Code != codes.ResourceExhausted {
		t.Fatal(err)
	}
	if len(clock.sleeps) != 0 || len(server.sent) != 1 {
		t.Fatalf("slept %v, sent %d times", clock.sleeps, len(server.sent))
	}
}

func TestTooOldToDeduplicateIsFinal(t *testing.T) {
	client, server, _ := fakeClient(t, Config{},
		failure(codes.FailedPrecondition, "command id is too old to deduplicate: check whether it was applied"))
	result, err := client.Deposit(background, "acc-1", "1")
	failed := ledgerError(t, err)
	if !failed.TooOldToDeduplicate() || failed.Attempts != 1 || len(server.sent) != 1 {
		t.Fatalf("%+v after %d tries", failed, len(server.sent))
	}
	if failed.CommandID != server.commandIDs()[0] || result.CommandID != failed.CommandID {
		t.Fatalf("the error names command %q, the result %q", failed.CommandID, result.CommandID)
	}
	// status.Code sees the server's status through the error.
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("status.Code(err) = %v", status.Code(err))
	}
}

func TestEveryOtherStatusIsFinal(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.AlreadyExists, codes.NotFound, codes.Aborted,
		codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition, codes.Internal, codes.Unknown, codes.Canceled} {
		client, server, clock := fakeClient(t, Config{}, failure(code, "no"), accepted)
		_, err := client.Deposit(background, "acc-1", "1")
		if failed := ledgerError(t, err); failed.Code != code || failed.Details != "no" || failed.Method != "Deposit" {
			t.Fatalf("%v: %+v", code, failed)
		}
		if len(server.sent) != 1 || len(clock.sleeps) != 0 {
			t.Fatalf("%v: sent %d times, slept %v", code, len(server.sent), clock.sleeps)
		}
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	client, server, _ := fakeClient(t, Config{Retry: RetryPolicy{MaxAttempts: 3}},
		failure(codes.Unavailable, "down"), failure(codes.Unavailable, "down"), failure(codes.Unavailable, "down"), accepted)
	_, err := client.Deposit(background, "acc-1", "1")
	if failed := ledgerError(t, err); failed.Code != codes.Unavailable || failed.Attempts != 3 || len(server.sent) != 3 {
		t.Fatalf("%v after %d tries", err, len(server.sent))
	}
}

func TestNoTryStartsAfterTheOverallDeadlineAndEachTryHasItsOwn(t *testing.T) {
	unavailable := make([]outcome, 100)
	for i := range unavailable {
		unavailable[i] = failure(codes.Unavailable, "down")
	}
	policy := RetryPolicy{InitialBackoff: 400 * time.Millisecond, Multiplier: 1, MaxAttempts: 100, AttemptTimeout: 600 * time.Millisecond}
	clock := newFakeClock()
	start := clock.Now()
	client, server, _ := fakeClient(t, Config{Timeout: time.Second, Retry: policy, Clock: clock}, unavailable...)
	_, err := client.Deposit(background, "acc-1", "1")
	if failed := ledgerError(t, err); failed.Code != codes.Unavailable {
		t.Fatal(err)
	}
	// Tries at 0, 200 ms, 400 ms ... (waits of half of 400 ms); none at or after 1 s.
	if len(server.sent) != 5 {
		t.Fatalf("sent %d times, slept %v", len(server.sent), clock.sleeps)
	}
	for i, try := range server.sent {
		tryStart := start.Add(time.Duration(i) * 200 * time.Millisecond)
		want := tryStart.Add(600 * time.Millisecond)
		if overall := start.Add(time.Second); overall.Before(want) {
			want = overall
		}
		if !try.deadline.Equal(want) {
			t.Fatalf("try %d: deadline %v after the start, want %v", i, try.deadline.Sub(start), want.Sub(start))
		}
	}
}

func TestTheContextsDeadlineIsTheOverallOne(t *testing.T) {
	clock := newFakeClock()
	ctx, cancel := context.WithDeadline(background, clock.Now().Add(2*time.Second))
	defer cancel()
	client, server, _ := fakeClient(t, Config{Clock: clock, Timeout: time.Hour}, accepted)
	if _, err := client.GetAccount(ctx, "acc-1", ""); err != nil {
		t.Fatal(err)
	}
	if got := server.sent[0].deadline.Sub(clock.Now()); got != 2*time.Second {
		t.Fatalf("the try's deadline is %v away, want the context's 2s", got)
	}
}

func TestACancelledCallIsNotRetried(t *testing.T) {
	ctx, cancel := context.WithCancel(background)
	cancel()
	client, server, clock := fakeClient(t, Config{}, failure(codes.Unavailable, "down"), accepted)
	_, err := client.Deposit(ctx, "acc-1", "1")
	if failed := ledgerError(t, err); failed.Attempts != 1 || len(server.sent) != 1 || len(clock.sleeps) != 0 {
		t.Fatalf("%v: sent %d times", err, len(server.sent))
	}
}

func TestQueriesAreRetriedToo(t *testing.T) {
	client, server, _ := fakeClient(t, Config{}, failure(codes.Unavailable, "not ready"), accepted)
	answer, err := client.GetAccount(background, "acc-1", "v1.MDo3")
	if err != nil || answer.GetAccount().GetAccountId() != "acc-1" || len(server.sent) != 2 {
		t.Fatalf("%v, %v after %d tries", answer, err, len(server.sent))
	}
}
