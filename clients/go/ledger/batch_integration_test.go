package ledger_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"ledger/clients/go/ledger"
	"ledger/clients/go/ledgerv1"
)

func codesOf(batch ledger.BatchResult) []codes.Code {
	got := make([]codes.Code, len(batch.Results))
	for i, result := range batch.Results {
		got[i] = result.Code
	}
	return got
}

func TestIntegrationABatchGetsOneResultPerCommandAndTheFailingOneItsOwnCode(t *testing.T) {
	ctx, id := context.Background(), accountID()
	session := writer(t).Session("")
	batch := must(session.ExecuteBatch(ctx, []*ledgerv1.Command{
		ledger.OpenAccountCommand(id, "USD", ""),
		ledger.DepositCommand(id, "10.00"),
		ledger.WithdrawCommand(id, "99.00"),
		ledger.DepositCommand(id, "2.50"),
	}, false)).of(t)
	want := []codes.Code{codes.OK, codes.OK, codes.FailedPrecondition, codes.OK}
	if got := codesOf(batch); len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("codes %v, want %v", got, want)
	}
	if batch.Results[2].Message == "" || batch.Results[3].Version != 3 || !ledger.IsCommandID(batch.Results[3].CommandID) {
		t.Fatalf("results %+v", batch.Results)
	}
	found := must(session.GetAccounts(ctx, []string{id, id + "-none"})).of(t)
	if len(found.GetAccounts()) != 1 || found.GetAccounts()[0].GetBalance() != "12.50" ||
		len(found.GetMissing()) != 1 || found.GetMissing()[0] != id+"-none" {
		t.Fatalf("GetAccounts %v", found)
	}
	now := &ledgerv1.ListBalancesAtRequest{At: timestamppb.Now(), AccountIdPrefix: id}
	balances := must(session.ListBalancesAt(ctx, now)).of(t).GetBalances()
	if len(balances) != 1 || balances[0].GetBalance() != "12.50" || balances[0].GetVersion() != 3 {
		t.Fatalf("balances %v", balances)
	}
	totals := must(session.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{At: timestamppb.Now()})).of(t).GetCurrencies()
	if len(totals) == 0 {
		t.Fatal("no currencies in the trial balance")
	}
}

func TestIntegrationAnAtomicBatchWithAFailingCommandAppliesNothing(t *testing.T) {
	ctx, id := context.Background(), accountID()
	session := writer(t).Session("")
	must(session.OpenAccount(ctx, id, "EUR", "")).of(t)
	batch := must(session.ExecuteBatch(ctx, []*ledgerv1.Command{
		ledger.DepositCommand(id, "10.00"),
		ledger.WithdrawCommand(id, "50.00"),
	}, true)).of(t)
	if got := codesOf(batch); got[0] != codes.Aborted || got[1] != codes.FailedPrecondition {
		t.Fatalf("codes %v", got)
	}
	account := must(session.GetAccount(ctx, id)).of(t).GetAccount()
	if account.GetBalance() != "0.00" || account.GetVersion() != 1 {
		t.Fatalf("account %v", account)
	}
}

func TestIntegrationABatchWhoseAnswerIsLostIsRetriedAndAppliedOnce(t *testing.T) {
	var sent []*ledgerv1.ExecuteBatchRequest
	ctx, id := context.Background(), accountID()
	session := writer(t, loseFirstAnswer(&sent)).Session("")
	must(session.OpenAccount(ctx, id, "GBP", "")).of(t)
	batch := must(session.ExecuteBatch(ctx, []*ledgerv1.Command{ledger.DepositCommand(id, "1.00"), ledger.DepositCommand(id, "2.00")}, false)).of(t)
	if len(sent) != 2 || !proto.Equal(sent[0], sent[1]) {
		t.Fatalf("sent %v", sent)
	}
	if got := codesOf(batch); got[0] != codes.OK || got[1] != codes.OK || batch.Results[1].Version != 3 {
		t.Fatalf("results %+v", batch.Results)
	}
	transactions := must(session.ListTransactions(ctx, &ledgerv1.ListTransactionsRequest{AccountId: id})).of(t).GetTransactions()
	if len(transactions) != 2 || transactions[0].GetCommandId() != batch.Results[0].CommandID ||
		transactions[1].GetCommandId() != batch.Results[1].CommandID {
		t.Fatalf("transactions %v", transactions)
	}
}
