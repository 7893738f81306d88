package ledger

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"ledger/clients/go/ledgerv1"
)

// outcome is one answer of a fake server: OK, or a status with an optional trailer.
type outcome struct {
	code    codes.Code
	message string
	trailer metadata.MD
}

var accepted = outcome{code: codes.OK}

func failure(code codes.Code, message string, trailer ...string) outcome {
	return outcome{code: code, message: message, trailer: metadata.Pairs(trailer...)}
}

// sent is one try as the fake server saw it.
type sent struct {
	request  proto.Message
	deadline time.Time
}

// fakeServer answers each call with the next outcome (OK once they run out) and records it. Its
// embedded interfaces are nil: a call the test did not expect panics.
type fakeServer struct {
	ledgerv1.CommandServiceClient
	ledgerv1.QueryServiceClient
	t        *testing.T
	mu       sync.Mutex // the calls of a concurrent test
	outcomes []outcome
	sent     []sent
	// freshness is the token each query answers with.
	freshness string
}

// answer records a try and returns how many there were so far, or the try's failure.
func (f *fakeServer) answer(ctx context.Context, request proto.Message, options []grpc.CallOption) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		f.t.Error("a try without a deadline")
	}
	f.sent = append(f.sent, sent{request: proto.Clone(request), deadline: deadline})
	next := accepted
	if len(f.outcomes) > 0 {
		next, f.outcomes = f.outcomes[0], f.outcomes[1:]
	}
	for _, option := range options {
		if trailer, isTrailer := option.(grpc.TrailerCallOption); isTrailer {
			*trailer.TrailerAddr = next.trailer
		}
	}
	if next.code == codes.OK {
		return uint64(len(f.sent)), nil
	}
	return 0, status.Error(next.code, next.message)
}

func (f *fakeServer) commandIDs() []string {
	ids := make([]string, len(f.sent))
	for i, try := range f.sent {
		ids[i] = try.request.(interface{ GetCommandId() string }).GetCommandId()
	}
	return ids
}

// The token a command answers with: "v1." + base64url("<partition>:<number of calls so far>").
func commandToken(accountID string, calls uint64) string {
	return encodeToken(map[uint64]uint64{partitionOf(accountID): calls})
}

func partitionOf(accountID string) uint64 { return uint64(len(accountID)) }

func (f *fakeServer) OpenAccount(ctx context.Context, in *ledgerv1.OpenAccountRequest, o ...grpc.CallOption) (*ledgerv1.OpenAccountResponse, error) {
	calls, err := f.answer(ctx, in, o)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.OpenAccountResponse{Version: 1, ConsistencyToken: commandToken(in.AccountId, calls)}, nil
}

func (f *fakeServer) Deposit(ctx context.Context, in *ledgerv1.DepositRequest, o ...grpc.CallOption) (*ledgerv1.DepositResponse, error) {
	calls, err := f.answer(ctx, in, o)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.DepositResponse{Version: 2, ConsistencyToken: commandToken(in.AccountId, calls)}, nil
}

func (f *fakeServer) Withdraw(ctx context.Context, in *ledgerv1.WithdrawRequest, o ...grpc.CallOption) (*ledgerv1.WithdrawResponse, error) {
	calls, err := f.answer(ctx, in, o)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.WithdrawResponse{Version: 3, ConsistencyToken: commandToken(in.AccountId, calls)}, nil
}

func (f *fakeServer) GetAccount(ctx context.Context, in *ledgerv1.GetAccountRequest, o ...grpc.CallOption) (*ledgerv1.GetAccountResponse, error) {
	if _, err := f.answer(ctx, in, o); err != nil {
		return nil, err
	}
	return &ledgerv1.GetAccountResponse{
		Account:   &ledgerv1.Account{AccountId: in.AccountId},
		Freshness: &ledgerv1.Freshness{ConsistencyToken: f.freshness},
	}, nil
}

func (f *fakeServer) ListAccounts(ctx context.Context, in *ledgerv1.ListAccountsRequest, o ...grpc.CallOption) (*ledgerv1.ListAccountsResponse, error) {
	if _, err := f.answer(ctx, in, o); err != nil {
		return nil, err
	}
	return &ledgerv1.ListAccountsResponse{Freshness: &ledgerv1.Freshness{ConsistencyToken: f.freshness}}, nil
}

// ExecuteBatch answers OK for every command but those whose account id is "refused".
func (f *fakeServer) ExecuteBatch(ctx context.Context, in *ledgerv1.ExecuteBatchRequest, o ...grpc.CallOption) (*ledgerv1.ExecuteBatchResponse, error) {
	calls, err := f.answer(ctx, in, o)
	if err != nil {
		return nil, err
	}
	answer := &ledgerv1.ExecuteBatchResponse{ConsistencyToken: commandToken("batch", calls)}
	for i, command := range in.Commands {
		result := &ledgerv1.CommandResult{Version: int64(i + 1), ConsistencyToken: answer.ConsistencyToken}
		if command.GetDeposit().GetAccountId() == "refused" {
			result = &ledgerv1.CommandResult{Code: int32(codes.NotFound), Message: "no account refused"}
		}
		answer.Results = append(answer.Results, result)
	}
	return answer, nil
}

func (f *fakeServer) GetAccounts(ctx context.Context, in *ledgerv1.GetAccountsRequest, o ...grpc.CallOption) (*ledgerv1.GetAccountsResponse, error) {
	if _, err := f.answer(ctx, in, o); err != nil {
		return nil, err
	}
	return &ledgerv1.GetAccountsResponse{Missing: in.AccountIds, Freshness: &ledgerv1.Freshness{ConsistencyToken: f.freshness}}, nil
}

func (f *fakeServer) ListBalancesAt(ctx context.Context, in *ledgerv1.ListBalancesAtRequest, o ...grpc.CallOption) (*ledgerv1.ListBalancesAtResponse, error) {
	if _, err := f.answer(ctx, in, o); err != nil {
		return nil, err
	}
	return &ledgerv1.ListBalancesAtResponse{Freshness: &ledgerv1.Freshness{ConsistencyToken: f.freshness}}, nil
}

func (f *fakeServer) GetTrialBalance(ctx context.Context, in *ledgerv1.GetTrialBalanceRequest, o ...grpc.CallOption) (*ledgerv1.GetTrialBalanceResponse, error) {
	if _, err := f.answer(ctx, in, o); err != nil {
		return nil, err
	}
	return &ledgerv1.GetTrialBalanceResponse{Freshness: &ledgerv1.Freshness{ConsistencyToken: f.freshness}}, nil
}

// fakeClock starts at the real time (so the tries' contexts are not already expired) and moves
// only when slept on.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
	dice   []float64
}

func newFakeClock(dice ...float64) *fakeClock { return &fakeClock{now: time.Now(), dice: dice} }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func (c *fakeClock) Float64() float64 {
	if len(c.dice) == 0 {
		return 0.5
	}
	next := c.dice[0]
	c.dice = c.dice[1:]
	return next
}

// fakeClient is a client of a fake server answering outcomes, on a fake clock.
func fakeClient(t *testing.T, config Config, outcomes ...outcome) (*Client, *fakeServer, *fakeClock) {
	server := &fakeServer{t: t, outcomes: outcomes}
	clock, isFake := config.Clock.(*fakeClock)
	if !isFake {
		clock = newFakeClock()
		config.Clock = clock
	}
	return NewClient(server, server, config), server, clock
}
