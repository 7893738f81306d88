package ledger

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"ledger/clients/go/ledgerv1"
)

// Session reads its own writes: every command's consistency token (and every read's freshness)
// is merged into the session's token, which each of its reads passes to the server, so a read
// waits until the read model includes everything the session did and saw before it. Safe for
// concurrent use.
type Session struct {
	client *Client
	mu     sync.Mutex
	token  string
}

// ConsistencyToken is what the session's reads wait for: everything it wrote or read so far.
func (s *Session) ConsistencyToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// merge never replaces the token, so it cannot move back when calls overlap.
func (s *Session) merge(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = MergeTokens(s.token, token)
}

func (s *Session) wrote(result CommandResult, err error) (CommandResult, error) {
	if err == nil {
		s.merge(result.ConsistencyToken)
	}
	return result, err
}

type freshened interface {
	GetFreshness() *ledgerv1.Freshness
}

func read[Res freshened](s *Session, answer Res, err error) (Res, error) {
	if err == nil {
		s.merge(answer.GetFreshness().GetConsistencyToken())
	}
	return answer, err
}

// withToken is a copy of request (the caller's stays as it was; nil is an empty one) carrying the
// session's token.
func withToken[Req proto.Message](request Req, set func(Req, string), token string) Req {
	copied := request.ProtoReflect().New().Interface().(Req)
	if request.ProtoReflect().IsValid() {
		copied = proto.Clone(request).(Req)
	}
	set(copied, token)
	return copied
}

// OpenAccount is Client.OpenAccount, remembered by the session.
func (s *Session) OpenAccount(ctx context.Context, accountID, currency, owner string, options ...CommandOption) (CommandResult, error) {
	return s.wrote(s.client.OpenAccount(ctx, accountID, currency, owner, options...))
}

// Deposit is Client.Deposit, remembered by the session.
func (s *Session) Deposit(ctx context.Context, accountID, amount string, options ...CommandOption) (CommandResult, error) {
	return s.wrote(s.client.Deposit(ctx, accountID, amount, options...))
}

// Withdraw is Client.Withdraw, remembered by the session.
func (s *Session) Withdraw(ctx context.Context, accountID, amount string, options ...CommandOption) (CommandResult, error) {
	return s.wrote(s.client.Withdraw(ctx, accountID, amount, options...))
}

// Transfer is Client.Transfer, remembered by the session.
func (s *Session) Transfer(ctx context.Context, fromAccountID, toAccountID, amount string, options ...CommandOption) (CommandResult, error) {
	return s.wrote(s.client.Transfer(ctx, fromAccountID, toAccountID, amount, options...))
}

// CloseAccount is Client.CloseAccount, remembered by the session.
func (s *Session) CloseAccount(ctx context.Context, accountID string, options ...CommandOption) (CommandResult, error) {
	return s.wrote(s.client.CloseAccount(ctx, accountID, options...))
}

// ExecuteBatch is Client.ExecuteBatch; the session remembers every command of it that succeeded.
func (s *Session) ExecuteBatch(ctx context.Context, commands []*ledgerv1.Command, atomic bool) (BatchResult, error) {
	result, err := s.client.ExecuteBatch(ctx, commands, atomic)
	if err == nil {
		s.merge(result.ConsistencyToken)
	}
	return result, err
}

// GetAccounts reads accounts as of everything the session did.
func (s *Session) GetAccounts(ctx context.Context, accountIDs []string) (*ledgerv1.GetAccountsResponse, error) {
	answer, err := s.client.GetAccounts(ctx, accountIDs, s.ConsistencyToken())
	return read(s, answer, err)
}

// ListBalancesAt reads a page of past balances as of everything the session did.
func (s *Session) ListBalancesAt(ctx context.Context, request *ledgerv1.ListBalancesAtRequest) (*ledgerv1.ListBalancesAtResponse, error) {
	request = withToken(request, func(r *ledgerv1.ListBalancesAtRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.ListBalancesAt(ctx, request)
	return read(s, answer, err)
}

// GetTrialBalance reads the per-currency totals as of everything the session did.
func (s *Session) GetTrialBalance(ctx context.Context, request *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	request = withToken(request, func(r *ledgerv1.GetTrialBalanceRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.GetTrialBalance(ctx, request)
	return read(s, answer, err)
}

// GetAccount reads the account as of everything the session did.
func (s *Session) GetAccount(ctx context.Context, accountID string) (*ledgerv1.GetAccountResponse, error) {
	answer, err := s.client.GetAccount(ctx, accountID, s.ConsistencyToken())
	return read(s, answer, err)
}

// ListAccounts reads a page of accounts as of everything the session did; the request's own
// consistency token is replaced by the session's.
func (s *Session) ListAccounts(ctx context.Context, request *ledgerv1.ListAccountsRequest) (*ledgerv1.ListAccountsResponse, error) {
	request = withToken(request, func(r *ledgerv1.ListAccountsRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.ListAccounts(ctx, request)
	return read(s, answer, err)
}

// ListTransactions reads a page of movements as of everything the session did.
func (s *Session) ListTransactions(ctx context.Context, request *ledgerv1.ListTransactionsRequest) (*ledgerv1.ListTransactionsResponse, error) {
	request = withToken(request, func(r *ledgerv1.ListTransactionsRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.ListTransactions(ctx, request)
	return read(s, answer, err)
}

// GetBalanceAt reads a past balance as of everything the session did.
func (s *Session) GetBalanceAt(ctx context.Context, request *ledgerv1.GetBalanceAtRequest) (*ledgerv1.GetBalanceAtResponse, error) {
	request = withToken(request, func(r *ledgerv1.GetBalanceAtRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.GetBalanceAt(ctx, request)
	return read(s, answer, err)
}

// GetDailySummaries reads a page of per-day totals as of everything the session did.
func (s *Session) GetDailySummaries(ctx context.Context, request *ledgerv1.GetDailySummariesRequest) (*ledgerv1.GetDailySummariesResponse, error) {
	request = withToken(request, func(r *ledgerv1.GetDailySummariesRequest, t string) { r.ConsistencyToken = t }, s.ConsistencyToken())
	answer, err := s.client.GetDailySummaries(ctx, request)
	return read(s, answer, err)
}

// GetProjectionStatus waits until the read model includes everything the session did.
func (s *Session) GetProjectionStatus(ctx context.Context) (*ledgerv1.GetProjectionStatusResponse, error) {
	answer, err := s.client.GetProjectionStatus(ctx, s.ConsistencyToken())
	return read(s, answer, err)
}

// WatchAccount follows an account from a state that includes everything the session did.
func (s *Session) WatchAccount(ctx context.Context, accountID string) (grpc.ServerStreamingClient[ledgerv1.WatchAccountResponse], error) {
	return s.client.WatchAccount(ctx, accountID, s.ConsistencyToken())
}
