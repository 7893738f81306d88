package ledger

import (
	"reflect"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"ledger/clients/go/ledgerv1"
)

func token(positions map[uint64]uint64) string { return encodeToken(positions) }

func TestMergedTokensHoldTheLatestOffsetOfEachPartition(t *testing.T) {
	older := token(map[uint64]uint64{0: 7, 2: 30})
	newer := token(map[uint64]uint64{2: 12, 5: 1})
	merged := MergeTokens(older, newer)
	got, ok := positions(merged)
	if want := map[uint64]uint64{0: 7, 2: 30, 5: 1}; !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("merged %q = %v, want %v", merged, got, want)
	}
	if merged != MergeTokens(newer, older) {
		t.Fatal("merging depends on the order")
	}
}

func TestTheServersTokenFormat(t *testing.T) {
	// ConsistencyToken({0: 7}).encode() and ({1: 12, 3: 4}) in ledger/consistency.py.
	if got := token(map[uint64]uint64{0: 7}); got != "v1.MDo3" {
		t.Fatalf("got %q", got)
	}
	if got := token(map[uint64]uint64{3: 4, 1: 12}); got != "v1.MToxMiwzOjQ" {
		t.Fatalf("got %q", got)
	}
}

func TestEmptyAndUnknownTokens(t *testing.T) {
	known := token(map[uint64]uint64{0: 7})
	cases := []struct{ older, newer, want string }{
		{"", known, known},
		{known, "", known},
		{"v2.something", known, known},
		{known, "v2.something", "v2.something"},
		{known, "v1.not base64", "v1.not base64"},
		{known, "v1.eDp5", "v1.eDp5"}, // "x:y"
	}
	for _, c := range cases {
		if got := MergeTokens(c.older, c.newer); got != c.want {
			t.Errorf("MergeTokens(%q, %q) = %q, want %q", c.older, c.newer, got, c.want)
		}
	}
}

func TestASessionReadsEverythingItWroteAndRead(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	session := client.Session("")
	// The fake names partition len(accountID) and offset = the number of calls so far.
	if _, err := session.OpenAccount(background, "a", "EUR", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := session.Deposit(background, "bbb", "1"); err != nil {
		t.Fatal(err)
	}
	server.freshness = token(map[uint64]uint64{1: 1, 3: 2, 7: 40})
	if _, err := session.GetAccount(background, "a"); err != nil {
		t.Fatal(err)
	}
	if got := server.sent[2].request.(*ledgerv1.GetAccountRequest).ConsistencyToken; got != token(map[uint64]uint64{1: 1, 3: 2}) {
		t.Fatalf("the read waited for %q, not for both writes", got)
	}
	// What the read saw, the next read waits for too; the caller's request is left as it was.
	request := &ledgerv1.ListAccountsRequest{PageSize: 5, ConsistencyToken: "v1.ignored"}
	if _, err := session.ListAccounts(background, request); err != nil {
		t.Fatal(err)
	}
	sent := server.sent[3].request.(*ledgerv1.ListAccountsRequest)
	if sent.ConsistencyToken != server.freshness || sent.PageSize != 5 || request.ConsistencyToken != "v1.ignored" {
		t.Fatalf("sent %v for %v", sent, request)
	}
	if _, err := session.ListAccounts(background, nil); err != nil {
		t.Fatal(err)
	}
	if session.ConsistencyToken() != server.freshness {
		t.Fatalf("session token %q", session.ConsistencyToken())
	}
}

func TestAFailedCommandLeavesTheSessionAsItWas(t *testing.T) {
	client, _, _ := fakeClient(t, Config{}, failure(codes.InvalidArgument, "cents on a yen account"))
	session := client.Session("v1.MDo3")
	if _, err := session.Deposit(background, "acc-1", "1.50"); err == nil {
		t.Fatal("the deposit succeeded")
	}
	if session.ConsistencyToken() != "v1.MDo3" {
		t.Fatalf("session token %q", session.ConsistencyToken())
	}
}

func TestASessionUsedConcurrentlyKeepsEveryWrite(t *testing.T) {
	client, server, _ := fakeClient(t, Config{Clock: realClock{}})
	session := client.Session("")
	var wg sync.WaitGroup
	for i := 1; i <= 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Account "xx…x" of length i: partition i.
			if _, err := session.Deposit(background, strings.Repeat("x", i), "1"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := positions(session.ConsistencyToken())
	if len(got) != 16 || len(server.sent) != 16 {
		t.Fatalf("the session's token %v after %d deposits", got, len(server.sent))
	}
}
