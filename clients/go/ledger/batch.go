package ledger

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"ledger/clients/go/ledgerv1"
)

// MaxBatchCommands is the server's limit on commands per batch; more is refused with
// INVALID_ARGUMENT.
const MaxBatchCommands = 8000

// OpenAccountCommand, DepositCommand, WithdrawCommand, TransferCommand and CloseAccountCommand
// make the commands of a batch. Each may be given a CommandId or an ExpectedVersion on its request
// (command.GetDeposit().ExpectedVersion = ...); one without a CommandId gets a fresh one.
func OpenAccountCommand(accountID, currency, owner string) *ledgerv1.Command {
	request := &ledgerv1.OpenAccountRequest{AccountId: accountID, Currency: currency, Owner: owner}
	return &ledgerv1.Command{Command: &ledgerv1.Command_OpenAccount{OpenAccount: request}}
}

// DepositCommand adds amount, a decimal string, to accountID.
func DepositCommand(accountID, amount string) *ledgerv1.Command {
	request := &ledgerv1.DepositRequest{AccountId: accountID, Amount: amount}
	return &ledgerv1.Command{Command: &ledgerv1.Command_Deposit{Deposit: request}}
}

// WithdrawCommand takes amount, a decimal string, from accountID.
func WithdrawCommand(accountID, amount string) *ledgerv1.Command {
	request := &ledgerv1.WithdrawRequest{AccountId: accountID, Amount: amount}
	return &ledgerv1.Command{Command: &ledgerv1.Command_Withdraw{Withdraw: request}}
}

// TransferCommand moves amount, a decimal string, between two accounts of the same currency.
func TransferCommand(fromAccountID, toAccountID, amount string) *ledgerv1.Command {
	request := &ledgerv1.TransferRequest{FromAccountId: fromAccountID, ToAccountId: toAccountID, Amount: amount}
	return &ledgerv1.Command{Command: &ledgerv1.Command_Transfer{Transfer: request}}
}

// CloseAccountCommand closes accountID, whose balance must be zero.
func CloseAccountCommand(accountID string) *ledgerv1.Command {
	request := &ledgerv1.CloseAccountRequest{AccountId: accountID}
	return &ledgerv1.Command{Command: &ledgerv1.Command_CloseAccount{CloseAccount: request}}
}

// BatchCommandResult is what became of one command of a batch.
type BatchCommandResult struct {
	// CommandID is the id the command was sent with, on every try.
	CommandID string
	// Code is the status its unary call would have returned: codes.OK when it was applied.
	Code codes.Code
	// Message is empty for OK; otherwise why not, as the unary call would say it.
	Message string
	// Version is, for OK, the (source) account's version after the command.
	Version int64
	// ConsistencyToken is, for OK, the position to read a state that includes the command.
	ConsistencyToken string
}

// Err is nil for an applied command, else its status as an error (status.Code(err) reads it).
func (r BatchCommandResult) Err() error {
	return status.Error(r.Code, r.Message)
}

// BatchResult is one result per command, in the order sent, and a token covering every command
// of the batch that succeeded ("" when none did).
type BatchResult struct {
	Results          []BatchCommandResult
	ConsistencyToken string
}

type commandRequest interface {
	proto.Message
	GetCommandId() string
}

// requestOf is the request a command holds, nil for an empty one.
func requestOf(command *ledgerv1.Command) commandRequest {
	switch held := command.GetCommand().(type) {
	case *ledgerv1.Command_OpenAccount:
		return held.OpenAccount
	case *ledgerv1.Command_Deposit:
		return held.Deposit
	case *ledgerv1.Command_Withdraw:
		return held.Withdraw
	case *ledgerv1.Command_Transfer:
		return held.Transfer
	case *ledgerv1.Command_CloseAccount:
		return held.CloseAccount
	}
	return nil
}

// batchRequest copies the commands (the caller's stay as they were), giving each without an id
// a fresh one: the same request, and so the same ids, for every try.
func batchRequest(commands []*ledgerv1.Command, atomic bool) (*ledgerv1.ExecuteBatchRequest, []string, error) {
	request := &ledgerv1.ExecuteBatchRequest{Commands: make([]*ledgerv1.Command, len(commands)), Atomic: atomic}
	ids := make([]string, len(commands))
	for i, command := range commands {
		copied := proto.Clone(command).(*ledgerv1.Command)
		held := requestOf(copied)
		if held == nil {
			return nil, nil, fmt.Errorf("ExecuteBatch: command %d holds no request", i)
		}
		ids[i] = held.GetCommandId()
		if ids[i] == "" {
			ids[i] = NewCommandID()
			field := held.ProtoReflect().Descriptor().Fields().ByName("command_id")
			held.ProtoReflect().Set(field, protoreflect.ValueOfString(ids[i]))
		} else if !IsCommandID(ids[i]) {
			return nil, nil, fmt.Errorf("ExecuteBatch: command %d: %w, not %q", i, ErrNotACommandID, ids[i])
		}
		request.Commands[i] = copied
	}
	return request, ids, nil
}

// ExecuteBatch sends up to MaxBatchCommands commands in one call; atomic: all applied or none.
// The whole batch is retried, with the same command ids, like a single command: the server
// answers the commands it already applied from their originals. A command's own failure is in
// its result's Code; the error is only for a failure of the whole call. Amounts are checked by
// the server, per command.
func (c *Client) ExecuteBatch(ctx context.Context, commands []*ledgerv1.Command, atomic bool) (BatchResult, error) {
	request, ids, err := batchRequest(commands, atomic)
	if err != nil {
		return BatchResult{}, err
	}
	answer, err := withRetries(ctx, c.retrier, "ExecuteBatch", "", func(ctx context.Context, o ...grpc.CallOption) (*ledgerv1.ExecuteBatchResponse, error) {
		return c.commands.ExecuteBatch(ctx, request, o...)
	})
	if err != nil {
		return BatchResult{}, err
	}
	results := make([]BatchCommandResult, len(answer.GetResults()))
	for i, result := range answer.GetResults() {
		results[i] = BatchCommandResult{Code: codes.Code(result.GetCode()), Message: result.GetMessage(), Version: result.GetVersion(), ConsistencyToken: result.GetConsistencyToken()}
		if i < len(ids) {
			results[i].CommandID = ids[i]
		}
	}
	return BatchResult{Results: results, ConsistencyToken: answer.GetConsistencyToken()}, nil
}
