// Package ledger is the Ledger's Go client: the generated stubs (package ledgerv1) with a fresh
// UUIDv7 command id per command, retries with that same id within an overall deadline, TLS and
// bearer-token credentials, sessions that read their own writes, and amounts as decimal strings.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/grpc"

	"ledger/clients/go/ledgerv1"
)

var amountPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// Client calls both servers. Its methods are safe for concurrent use.
type Client struct {
	commands ledgerv1.CommandServiceClient
	queries  ledgerv1.QueryServiceClient
	conns    []*grpc.ClientConn
	retrier
}

// Connect makes a client of the servers config names. It connects lazily: the first call opens
// the connections. Close it when done.
func Connect(config Config) (*Client, error) {
	options, err := config.dialOptions()
	if err != nil {
		return nil, err
	}
	commandConn, err := grpc.NewClient(config.CommandAddress, options...)
	if err != nil {
		return nil, fmt.Errorf("ledger: command server %q: %w", config.CommandAddress, err)
	}
	queryConn, err := grpc.NewClient(config.QueryAddress, options...)
	if err != nil {
		commandConn.Close()
		return nil, fmt.Errorf("ledger: query server %q: %w", config.QueryAddress, err)
	}
	client := NewClient(ledgerv1.NewCommandServiceClient(commandConn), ledgerv1.NewQueryServiceClient(queryConn), config)
	client.conns = []*grpc.ClientConn{commandConn, queryConn}
	return client, nil
}

// NewClient makes a client over stubs the caller made (and closes): its own connections, or
// fakes. Of config it uses Timeout, Retry and Clock.
func NewClient(commands ledgerv1.CommandServiceClient, queries ledgerv1.QueryServiceClient, config Config) *Client {
	timeout := config.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	clock := config.Clock
	if clock == nil {
		clock = realClock{}
	}
	return &Client{
		commands: commands,
		queries:  queries,
		retrier:  retrier{policy: config.Retry.withDefaults(), timeout: timeout, clock: clock},
	}
}

// Close closes the connections Connect opened.
func (c *Client) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	return errors.Join(errs...)
}

// Session returns a session starting from consistencyToken ("" for none): its reads wait until
// the read model includes everything it wrote and read.
func (c *Client) Session(consistencyToken string) *Session {
	return &Session{client: c, token: consistencyToken}
}

// CommandResult is what an accepted command returns.
type CommandResult struct {
	// Version is the account's version after the command (for transfers: the source's).
	Version int64
	// ConsistencyToken, passed to a query, makes it read a state that includes this command.
	ConsistencyToken string
	// CommandID is the id the command was sent with, on every try.
	CommandID string
}

// CommandOption changes how one command is sent.
type CommandOption func(*commandOptions)

type commandOptions struct {
	commandID       string
	expectedVersion *int64
}

// WithCommandID sends the command with an id made earlier for this very change (to send it again
// after a crash, say) instead of a new one.
func WithCommandID(id string) CommandOption {
	return func(o *commandOptions) { o.commandID = id }
}

// WithExpectedVersion applies the command only if the account (for transfers: the source) is at
// this version; otherwise the server answers ABORTED.
func WithExpectedVersion(version int64) CommandOption {
	return func(o *commandOptions) { o.expectedVersion = &version }
}

type commandResponse interface {
	GetVersion() int64
	GetConsistencyToken() string
}

// command sends one command, with one command id for all of its tries. The context's deadline,
// if any, is the overall one.
func command[R commandResponse](ctx context.Context, c *Client, method string, options []CommandOption, call func(commandID string, expectedVersion *int64) send[R]) (CommandResult, error) {
	chosen := commandOptions{}
	for _, option := range options {
		option(&chosen)
	}
	if chosen.commandID == "" {
		chosen.commandID = NewCommandID()
	} else if !IsCommandID(chosen.commandID) {
		// The servers refuse any other id; better said here than after a round trip.
		return CommandResult{}, fmt.Errorf("%s: %w, not %q", method, ErrNotACommandID, chosen.commandID)
	}
	answer, err := withRetries(ctx, c.retrier, method, chosen.commandID, call(chosen.commandID, chosen.expectedVersion))
	if err != nil {
		return CommandResult{CommandID: chosen.commandID}, err
	}
	return CommandResult{Version: answer.GetVersion(), ConsistencyToken: answer.GetConsistencyToken(), CommandID: chosen.commandID}, nil
}

func checkAmount(method, amount string) error {
	if !amountPattern.MatchString(amount) {
		return fmt.Errorf("%s: %w, not %q", method, ErrNotAnAmount, amount)
	}
	return nil
}

// OpenAccount opens accountID in currency (ISO 4217, e.g. "EUR"); owner may be empty.
func (c *Client) OpenAccount(ctx context.Context, accountID, currency, owner string, options ...CommandOption) (CommandResult, error) {
	return command(ctx, c, "OpenAccount", options, func(id string, _ *int64) send[*ledgerv1.OpenAccountResponse] {
		request := &ledgerv1.OpenAccountRequest{CommandId: id, AccountId: accountID, Currency: currency, Owner: owner}
		return func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.OpenAccountResponse, error) {
			return c.commands.OpenAccount(ctx, request, o...)
		}
	})
}

// Deposit adds amount, a decimal string in the account's currency ("12.50"), to accountID.
func (c *Client) Deposit(ctx context.Context, accountID, amount string, options ...CommandOption) (CommandResult, error) {
	if err := checkAmount("Deposit", amount); err != nil {
		return CommandResult{}, err
	}
	return command(ctx, c, "Deposit", options, func(id string, expected *int64) send[*ledgerv1.DepositResponse] {
		request := &ledgerv1.DepositRequest{CommandId: id, AccountId: accountID, Amount: amount, ExpectedVersion: expected}
		return func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.DepositResponse, error) {
			return c.commands.Deposit(ctx, request, o...)
		}
	})
}

// Withdraw takes amount, a decimal string, from accountID; never below zero.
func (c *Client) Withdraw(ctx context.Context, accountID, amount string, options ...CommandOption) (CommandResult, error) {
	if err := checkAmount("Withdraw", amount); err != nil {
		return CommandResult{}, err
	}
	return command(ctx, c, "Withdraw", options, func(id string, expected *int64) send[*ledgerv1.WithdrawResponse] {
		request := &ledgerv1.WithdrawRequest{CommandId: id, AccountId: accountID, Amount: amount, ExpectedVersion: expected}
		return func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.WithdrawResponse, error) {
			return c.commands.Withdraw(ctx, request, o...)
		}
	})
}

// Transfer moves amount, a decimal string, between two accounts of the same currency.
func (c *Client) Transfer(ctx context.Context, fromAccountID, toAccountID, amount string, options ...CommandOption) (CommandResult, error) {
	if err := checkAmount("Transfer", amount); err != nil {
		return CommandResult{}, err
	}
	return command(ctx, c, "Transfer", options, func(id string, expected *int64) send[*ledgerv1.TransferResponse] {
		request := &ledgerv1.TransferRequest{CommandId: id, FromAccountId: fromAccountID, ToAccountId: toAccountID, Amount: amount, ExpectedVersion: expected}
		return func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.TransferResponse, error) {
			return c.commands.Transfer(ctx, request, o...)
		}
	})
}

// CloseAccount closes accountID, whose balance must be zero.
func (c *Client) CloseAccount(ctx context.Context, accountID string, options ...CommandOption) (CommandResult, error) {
	return command(ctx, c, "CloseAccount", options, func(id string, expected *int64) send[*ledgerv1.CloseAccountResponse] {
		request := &ledgerv1.CloseAccountRequest{CommandId: id, AccountId: accountID, ExpectedVersion: expected}
		return func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.CloseAccountResponse, error) {
			return c.commands.CloseAccount(ctx, request, o...)
		}
	})
}

// Queries change nothing, so they are retried like commands. A consistency token ("" for none)
// makes the query server wait, within the deadline, until its read model includes that position.

// query sends one read with retries.
func query[Req, Res any](ctx context.Context, c *Client, method string, request Req, call func(context.Context, Req, ...grpc.CallOption) (Res, error)) (Res, error) {
	return withRetries(ctx, c.retrier, method, "", func(ctx context.Context, o ...grpc.CallOption) (Res, error) {
		return call(ctx, request, o...)
	})
}

// GetAccount reads one account.
func (c *Client) GetAccount(ctx context.Context, accountID, consistencyToken string) (*ledgerv1.GetAccountResponse, error) {
	request := &ledgerv1.GetAccountRequest{AccountId: accountID, ConsistencyToken: consistencyToken}
	return query(ctx, c, "GetAccount", request, c.queries.GetAccount)
}

// GetAccounts reads up to 1,000 accounts by id; the ids that name no account are in Missing.
func (c *Client) GetAccounts(ctx context.Context, accountIDs []string, consistencyToken string) (*ledgerv1.GetAccountsResponse, error) {
	request := &ledgerv1.GetAccountsRequest{AccountIds: accountIDs, ConsistencyToken: consistencyToken}
	return query(ctx, c, "GetAccounts", request, c.queries.GetAccounts)
}

// ListAccounts reads one page of accounts.
func (c *Client) ListAccounts(ctx context.Context, request *ledgerv1.ListAccountsRequest) (*ledgerv1.ListAccountsResponse, error) {
	return query(ctx, c, "ListAccounts", request, c.queries.ListAccounts)
}

// ListTransactions reads one page of an account's movements.
func (c *Client) ListTransactions(ctx context.Context, request *ledgerv1.ListTransactionsRequest) (*ledgerv1.ListTransactionsResponse, error) {
	return query(ctx, c, "ListTransactions", request, c.queries.ListTransactions)
}

// GetBalanceAt reads an account's balance at a past time.
func (c *Client) GetBalanceAt(ctx context.Context, request *ledgerv1.GetBalanceAtRequest) (*ledgerv1.GetBalanceAtResponse, error) {
	return query(ctx, c, "GetBalanceAt", request, c.queries.GetBalanceAt)
}

// ListBalancesAt reads one page of every account (or those with an id prefix) as it was at a time.
func (c *Client) ListBalancesAt(ctx context.Context, request *ledgerv1.ListBalancesAtRequest) (*ledgerv1.ListBalancesAtResponse, error) {
	return query(ctx, c, "ListBalancesAt", request, c.queries.ListBalancesAt)
}

// GetTrialBalance reads, per currency, the accounts, their total balance and the money in and
// out at a point in time.
func (c *Client) GetTrialBalance(ctx context.Context, request *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	return query(ctx, c, "GetTrialBalance", request, c.queries.GetTrialBalance)
}

// GetDailySummaries reads one page of per-day totals.
func (c *Client) GetDailySummaries(ctx context.Context, request *ledgerv1.GetDailySummariesRequest) (*ledgerv1.GetDailySummariesResponse, error) {
	return query(ctx, c, "GetDailySummaries", request, c.queries.GetDailySummaries)
}

// GetProjectionStatus reads how far the read model is behind the event log.
func (c *Client) GetProjectionStatus(ctx context.Context, consistencyToken string) (*ledgerv1.GetProjectionStatusResponse, error) {
	request := &ledgerv1.GetProjectionStatusRequest{ConsistencyToken: consistencyToken}
	return query(ctx, c, "GetProjectionStatus", request, c.queries.GetProjectionStatus)
}

// WatchAccount streams the account's state, then one message per change, until ctx is done or
// the account is closed. Not retried: a broken stream is restarted by the caller, with the last
// message's token so that nothing is missed. Its only deadline is ctx's.
func (c *Client) WatchAccount(ctx context.Context, accountID, consistencyToken string) (grpc.ServerStreamingClient[ledgerv1.WatchAccountResponse], error) {
	request := &ledgerv1.WatchAccountRequest{AccountId: accountID, ConsistencyToken: consistencyToken}
	return c.queries.WatchAccount(ctx, request)
}
