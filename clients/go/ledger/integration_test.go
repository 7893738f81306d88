package ledger_test

// Against the real, secure ledger: tests/e2e/test_go_client.py starts it and passes its addresses,
// CA and token files in LEDGER_GO_* variables. Without them (a plain `go test ./...`) these skip.

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"ledger/clients/go/ledger"
	"ledger/clients/go/ledgerv1"
)

func connect(t *testing.T, tokenVariable string, options ...grpc.DialOption) *ledger.Client {
	t.Helper()
	config := ledger.Config{
		CommandAddress: os.Getenv("LEDGER_GO_COMMAND_ADDRESS"),
		QueryAddress:   os.Getenv("LEDGER_GO_QUERY_ADDRESS"),
		CACertFile:     os.Getenv("LEDGER_GO_CA_FILE"),
		Timeout:        20 * time.Second,
		DialOptions:    options,
	}
	if config.CommandAddress == "" || config.QueryAddress == "" || config.CACertFile == "" {
		t.Skip("LEDGER_GO_* not set: no ledger to test against")
	}
	if tokenVariable != "" {
		config.TokenFile = os.Getenv(tokenVariable)
	}
	client, err := ledger.Connect(config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func writer(t *testing.T, options ...grpc.DialOption) *ledger.Client {
	return connect(t, "LEDGER_GO_WRITER_TOKEN_FILE", options...)
}

func accountID() string { return "go-" + ledger.NewCommandID()[24:] }

// answer is a call's outcome; must(call(...)).of(t) is its value, or the test's end.
type answer[T any] struct {
	value T
	err   error
}

func must[T any](value T, err error) answer[T] { return answer[T]{value, err} }

func (a answer[T]) of(t *testing.T) T {
	t.Helper()
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.value
}

func wantCode(t *testing.T, err error, code codes.Code) *ledger.Error {
	t.Helper()
	var failed *ledger.Error
	if !errors.As(err, &failed) || failed.Code != code {
		t.Fatalf("want %v, got %v", code, err)
	}
	return failed
}

func TestIntegrationOpensDepositsAndReadsItsOwnWriteInASession(t *testing.T) {
	ctx, id := context.Background(), accountID()
	session := writer(t).Session("")
	opened := must(session.OpenAccount(ctx, id, "USD", "Go client")).of(t)
	deposited := must(session.Deposit(ctx, id, "12.34")).of(t)
	if opened.Version != 1 || deposited.Version != 2 || opened.CommandID == deposited.CommandID {
		t.Fatalf("opened %+v, deposited %+v", opened, deposited)
	}
	answer := must(session.GetAccount(ctx, id)).of(t)
	account := answer.GetAccount()
	if account.GetBalance() != "12.34" || account.GetVersion() != 2 || account.GetOwner() != "Go client" ||
		account.GetStatus() != ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN || answer.GetFreshness().GetConsistencyToken() == "" {
		t.Fatalf("read back %v", answer)
	}
}

// loseFirstAnswer lets the first request of type R (a Deposit, a batch) reach the server, which
// applies it and answers, then tells the caller the network failed; it records every R sent.
func loseFirstAnswer[R any](sent *[]R) grpc.DialOption {
	var mu sync.Mutex
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, request, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, options ...grpc.CallOption) error {
		watched, isWatched := request.(R)
		if !isWatched {
			return invoker(ctx, method, request, reply, conn, options...)
		}
		mu.Lock()
		*sent = append(*sent, watched)
		first := len(*sent) == 1
		mu.Unlock()
		err := invoker(ctx, method, request, reply, conn, options...)
		if first && err == nil {
			return status.Error(codes.Unavailable, "answer lost (test)")
		}
		return err
	})
}

func TestIntegrationALostAnswerIsRetriedWithTheSameIDAndTheDepositIsAppliedOnce(t *testing.T) {
	var sent []*ledgerv1.DepositRequest
	ctx, id := context.Background(), accountID()
	session := writer(t, loseFirstAnswer(&sent)).Session("")
	must(session.OpenAccount(ctx, id, "EUR", "")).of(t)
	deposited := must(session.Deposit(ctx, id, "5.00")).of(t)
	if len(sent) != 2 || sent[0].GetCommandId() != deposited.CommandID || sent[1].GetCommandId() != deposited.CommandID {
		t.Fatalf("sent %v; the deposit's id is %s", sent, deposited.CommandID)
	}
	if deposited.Version != 2 {
		t.Fatalf("the retry answered version %d, not the first try's 2", deposited.Version)
	}
	listed := must(session.ListTransactions(ctx, &ledgerv1.ListTransactionsRequest{AccountId: id})).of(t)
	transactions := listed.GetTransactions()
	if len(transactions) != 1 || transactions[0].GetKind() != ledgerv1.TransactionKind_TRANSACTION_KIND_DEPOSIT ||
		transactions[0].GetAmount() != "5.00" || transactions[0].GetCommandId() != deposited.CommandID || transactions[0].GetVersion() != 2 {
		t.Fatalf("transactions %v", transactions)
	}
	account := must(session.GetAccount(ctx, id)).of(t).GetAccount()
	if account.GetBalance() != "5.00" || account.GetVersion() != 2 {
		t.Fatalf("account %v", account)
	}
}

func TestIntegrationSendingACommandAgainWithItsIDChangesNothing(t *testing.T) {
	ctx, id, client := context.Background(), accountID(), writer(t)
	must(client.OpenAccount(ctx, id, "JPY", "")).of(t)
	first := must(client.Deposit(ctx, id, "1500")).of(t)
	again := must(client.Deposit(ctx, id, "1500", ledger.WithCommandID(first.CommandID))).of(t)
	if again != first {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	if balance := must(client.GetAccount(ctx, id, again.ConsistencyToken)).of(t).GetAccount().GetBalance(); balance != "1500" {
		t.Fatalf("balance %s", balance)
	}
}

func TestIntegrationARejectedCommandFailsAtOnceWithTheServersStatus(t *testing.T) {
	ctx, id, client := context.Background(), accountID(), writer(t)
	must(client.OpenAccount(ctx, id, "JPY", "")).of(t)
	_, err := client.Deposit(ctx, id, "1.50") // cents on a yen account
	if failed := wantCode(t, err, codes.InvalidArgument); failed.Attempts != 1 || failed.Details == "" {
		t.Fatalf("%+v", failed)
	}
	_, err = client.Withdraw(ctx, id, "1", ledger.WithExpectedVersion(7))
	wantCode(t, err, codes.Aborted)
}

func TestIntegrationASessionWatchesFromAStateThatIncludesItsWrites(t *testing.T) {
	ctx, id := context.Background(), accountID()
	session := writer(t).Session("")
	must(session.OpenAccount(ctx, id, "USD", "")).of(t)
	must(session.Deposit(ctx, id, "0.10")).of(t)
	watching, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream := must(session.WatchAccount(watching, id)).of(t)
	if balance := must(stream.Recv()).of(t).GetAccount().GetBalance(); balance != "0.10" {
		t.Fatalf("first message's balance %s", balance)
	}
}

func TestIntegrationTheReaderTokenMayReadButNotWrite(t *testing.T) {
	ctx, reader := context.Background(), connect(t, "LEDGER_GO_READER_TOKEN_FILE")
	_, err := reader.OpenAccount(ctx, accountID(), "USD", "")
	wantCode(t, err, codes.PermissionDenied)
	if partitions := must(reader.GetProjectionStatus(ctx, "")).of(t).GetPartitions(); len(partitions) == 0 {
		t.Fatal("no partitions")
	}
}

func TestIntegrationWithoutATokenEveryCallIsRefused(t *testing.T) {
	_, err := connect(t, "").GetProjectionStatus(context.Background(), "")
	wantCode(t, err, codes.Unauthenticated)
}
