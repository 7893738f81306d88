package main

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"ledger/clients/go/ledger"
)

func main() {
	// `make run` writes the CA and the tokens here; the servers listen on 50051 and 50052.
	credentials := setting("LEDGER_CREDENTIALS", ".data/credentials")
	client, err := ledger.Connect(ledger.Config{
		CommandAddress: setting("LEDGER_COMMAND_ADDRESS", "127.0.0.1:50051"),
		QueryAddress:   setting("LEDGER_QUERY_ADDRESS", "127.0.0.1:50052"),
		CACertFile:     credentials + "/ca.pem",
		TokenFile:      credentials + "/writer.token",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx := context.Background()   // no deadline: each call gets 30 s, retries included
	session := client.Session("") // its reads wait for its own writes
	accountID := "go-" + ledger.NewCommandID()[24:]
	if _, err := session.OpenAccount(ctx, accountID, "EUR", "Carol"); err != nil {
		log.Fatal(err)
	}
	deposit, err := session.Deposit(ctx, accountID, "12.50") // amounts are decimal strings
	if err != nil {
		log.Fatal(err)
	}
	read, err := session.GetAccount(ctx, accountID) // includes the deposit
	if err != nil {
		log.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"accountId": accountID, "balance": read.GetAccount().GetBalance(),
		"version": read.GetAccount().GetVersion(), "commandId": deposit.CommandID,
	})
}

func setting(name, fallback string) string {
	if value, found := os.LookupEnv(name); found {
		return value
	}
	return fallback
}
