package ledger

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"ledger/clients/go/ledgerv1"
)

func TestABatchIsRetriedWholeWithTheSameIDs(t *testing.T) {
	client, server, _ := fakeClient(t, Config{}, failure(codes.Unavailable, "lost"), failure(codes.ResourceExhausted, "busy"))
	mine := NewCommandID()
	given := DepositCommand("acc-1", "1")
	given.GetDeposit().CommandId = mine
	fresh := OpenAccountCommand("acc-1", "EUR", "")
	batch, err := client.ExecuteBatch(background, []*ledgerv1.Command{fresh, given, DepositCommand("refused", "2")}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(server.sent) != 3 {
		t.Fatalf("%d tries, want 3", len(server.sent))
	}
	first := server.sent[0].request.(*ledgerv1.ExecuteBatchRequest)
	for _, try := range server.sent[1:] {
		if again := try.request.(*ledgerv1.ExecuteBatchRequest); again.String() != first.String() {
			t.Fatalf("a retry sent %v, the first try %v", again, first)
		}
	}
	if !first.Atomic {
		t.Fatal("atomic not sent")
	}
	if fresh.GetOpenAccount().CommandId != "" {
		t.Fatal("the caller's command was changed")
	}
	made := first.Commands[0].GetOpenAccount().CommandId
	if !IsCommandID(made) || first.Commands[1].GetDeposit().CommandId != mine {
		t.Fatalf("ids sent: %q, %q", made, first.Commands[1].GetDeposit().CommandId)
	}
	want := []BatchCommandResult{
		{CommandID: made, Code: codes.OK, Version: 1, ConsistencyToken: batch.ConsistencyToken},
		{CommandID: mine, Code: codes.OK, Version: 2, ConsistencyToken: batch.ConsistencyToken},
		{CommandID: batch.Results[2].CommandID, Code: codes.NotFound, Message: "no account refused"},
	}
	for i, result := range batch.Results {
		if result != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, result, want[i])
		}
	}
	if batch.Results[0].Err() != nil || status.Code(batch.Results[2].Err()) != codes.NotFound {
		t.Fatal("Err does not tell the result's status")
	}
}

func TestABatchWithABadCommandIsNotSent(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	bad := CloseAccountCommand("acc-1")
	bad.GetCloseAccount().CommandId = "not-an-id"
	if _, err := client.ExecuteBatch(background, []*ledgerv1.Command{bad}, false); !errors.Is(err, ErrNotACommandID) {
		t.Fatalf("got %v", err)
	}
	if _, err := client.ExecuteBatch(background, []*ledgerv1.Command{{}}, false); err == nil {
		t.Fatal("an empty command was sent")
	}
	if len(server.sent) != 0 {
		t.Fatalf("%d calls sent", len(server.sent))
	}
}

func TestAFailedBatchReturnsTheServersStatus(t *testing.T) {
	client, server, _ := fakeClient(t, Config{}, failure(codes.InvalidArgument, "more than 8000 commands"))
	_, err := client.ExecuteBatch(background, []*ledgerv1.Command{WithdrawCommand("acc-1", "1")}, false)
	if status.Code(err) != codes.InvalidArgument || len(server.sent) != 1 {
		t.Fatalf("got %v after %d tries", err, len(server.sent))
	}
}

func TestASessionCarriesABatchIntoItsNewReads(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	server.freshness = token(map[uint64]uint64{9: 1})
	session := client.Session("")
	batch, err := session.ExecuteBatch(background, []*ledgerv1.Command{TransferCommand("a", "b", "1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	found, err := session.GetAccounts(background, []string{"a", "b"})
	if err != nil || len(found.Missing) != 2 {
		t.Fatalf("got %v, %v", found, err)
	}
	if got := server.sent[1].request.(*ledgerv1.GetAccountsRequest).ConsistencyToken; got != batch.ConsistencyToken {
		t.Fatalf("GetAccounts waited for %q, want %q", got, batch.ConsistencyToken)
	}
	both := MergeTokens(batch.ConsistencyToken, server.freshness)
	if _, err := session.ListBalancesAt(background, &ledgerv1.ListBalancesAtRequest{AccountIdPrefix: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := session.GetTrialBalance(background, nil); err != nil {
		t.Fatal(err)
	}
	if got := server.sent[2].request.(*ledgerv1.ListBalancesAtRequest); got.ConsistencyToken != both || got.AccountIdPrefix != "a" {
		t.Fatalf("ListBalancesAt sent %v, want token %q", got, both)
	}
	if got := server.sent[3].request.(*ledgerv1.GetTrialBalanceRequest).ConsistencyToken; got != both {
		t.Fatalf("GetTrialBalance waited for %q, want %q", got, both)
	}
}
