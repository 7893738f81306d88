package ledger

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestACommandIDIsAUUIDv7OfNow(t *testing.T) {
	before := time.Now().UnixMilli()
	id := NewCommandID()
	after := time.Now().UnixMilli()
	if !IsCommandID(id) {
		t.Fatalf("%q is not a canonical UUIDv7", id)
	}
	prefix, err := hex.DecodeString(strings.ReplaceAll(id, "-", "")[:12])
	if err != nil {
		t.Fatal(err)
	}
	var millis int64
	for _, b := range prefix {
		millis = millis<<8 | int64(b)
	}
	if millis < before || millis > after {
		t.Fatalf("%q says %d ms, made between %d and %d", id, millis, before, after)
	}
}

func TestOnlyCanonicalUUIDv7sAreCommandIDs(t *testing.T) {
	for _, id := range []string{
		"",
		"0190b7a2-5e1b-4c3d-9a4f-2b6c8d0e1f3a", // version 4
		"0190B7A2-5E1B-7C3D-9A4F-2B6C8D0E1F3A", // upper case
		"0190b7a2-5e1b-7c3d-ca4f-2b6c8d0e1f3a", // variant 110
		"0190b7a25e1b7c3d9a4f2b6c8d0e1f3a",     // no hyphens
		"{0190b7a2-5e1b-7c3d-9a4f-2b6c8d0e1f3a}",
	} {
		if IsCommandID(id) {
			t.Errorf("%q taken for a command id", id)
		}
	}
}

func TestEachCommandGetsAFreshIDUnlessGivenOne(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	first, err1 := client.OpenAccount(background, "acc-1", "EUR", "Ann")
	second, err2 := client.Deposit(background, "acc-1", "1")
	again, err3 := client.Deposit(background, "acc-1", "1", WithCommandID(second.CommandID), WithExpectedVersion(1))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	ids := server.commandIDs()
	if first.CommandID == second.CommandID || ids[0] != first.CommandID || ids[1] != second.CommandID || ids[2] != second.CommandID {
		t.Fatalf("results %q %q %q, sent %v", first.CommandID, second.CommandID, again.CommandID, ids)
	}
	sentVersion := server.sent[2].request.(interface{ GetExpectedVersion() int64 }).GetExpectedVersion()
	if sentVersion != 1 || server.sent[1].request.(interface{ GetExpectedVersion() int64 }).GetExpectedVersion() != 0 {
		t.Fatalf("expected_version sent: %v", server.sent)
	}
}

func TestAnIDThatIsNotAUUIDv7IsRefusedBeforeSending(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	_, err := client.Deposit(background, "acc-1", "1", WithCommandID("retry-42"))
	if !errors.Is(err, ErrNotACommandID) || len(server.sent) != 0 {
		t.Fatalf("%v, sent %d", err, len(server.sent))
	}
}

func TestAmountsAreDecimalStringsSentAsGiven(t *testing.T) {
	client, server, _ := fakeClient(t, Config{})
	for _, amount := range []string{"12.34", "1500", "0.10", "007.5"} {
		if _, err := client.Deposit(background, "acc-1", amount); err != nil {
			t.Fatal(err)
		}
		if sent := server.sent[len(server.sent)-1].request.(interface{ GetAmount() string }).GetAmount(); sent != amount {
			t.Fatalf("sent %q for %q", sent, amount)
		}
	}
	for _, amount := range []string{"", "1e5", "-1", "+1", "12.", ".5", " 1", "1,50", "NaN", "١٢"} {
		if _, err := client.Withdraw(background, "acc-1", amount); !errors.Is(err, ErrNotAnAmount) {
			t.Fatalf("%q: %v", amount, err)
		}
	}
	if len(server.sent) != 4 {
		t.Fatalf("a refused amount was sent: %d calls", len(server.sent))
	}
}
