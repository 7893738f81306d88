// Command ledger-client shows the Ledger's read-your-writes from Go, with its options on the
// command line: it opens an account, deposits into it, and reads the account back in a session,
// so the read is guaranteed to include the deposit. Then it sends one atomic batch that opens a
// second account and transfers the deposit into it, and reads both accounts back in one call. Against `make run`, from the repository root:
//
//	go -C clients/go run ./examples/ledger-client -command 127.0.0.1:50051 -query 127.0.0.1:50052 \
//	    -cacert "$PWD/.data/credentials/ca.pem" -token-file "$PWD/.data/credentials/writer.token"
//
// It prints one JSON object describing what it did, and exits with status 1 if anything failed
// or the account read back is not what was written.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"time"

	"google.golang.org/grpc/codes"

	"ledger/clients/go/ledger"
	"ledger/clients/go/ledgerv1"
)

// Report is what the client prints: the account it made and what each step answered.
type Report struct {
	AccountID        string `json:"account_id"`
	Currency         string `json:"currency"`
	OpenedVersion    int64  `json:"opened_version"`
	DepositedAmount  string `json:"deposited_amount"`
	DepositVersion   int64  `json:"deposit_version"`
	DepositCommandID string `json:"deposit_command_id"`
	DepositToken     string `json:"deposit_token"`
	ReadBalance      string `json:"read_balance"`
	ReadVersion      int64  `json:"read_version"`
	ReadStatus       string `json:"read_status"`
	ReadFreshAsToken string `json:"read_fresh_as_token"`
	// The batch: its second account, each command's id and status code, its token, and the
	// balances of both accounts read back after it.
	BatchAccountID    string            `json:"batch_account_id"`
	BatchCommandIDs   []string          `json:"batch_command_ids"`
	BatchCodes        []string          `json:"batch_codes"`
	BatchToken        string            `json:"batch_token"`
	BatchReadBalances map[string]string `json:"batch_read_balances"`
}

func main() {
	var config ledger.Config
	flag.StringVar(&config.CommandAddress, "command", "127.0.0.1:50051", "command server address (host:port)")
	flag.StringVar(&config.QueryAddress, "query", "127.0.0.1:50052", "query server address (host:port)")
	flag.StringVar(&config.CACertFile, "cacert", "", "PEM file of the CA that signed the servers' certificates (default: the system's)")
	flag.StringVar(&config.TokenFile, "token-file", "", "file holding the bearer token sent with every call")
	flag.BoolVar(&config.Insecure, "plaintext", false, "no TLS (servers run with LEDGER_INSECURE=1 on loopback)")
	currency := flag.String("currency", "EUR", "ISO 4217 currency of the new account")
	amount := flag.String("amount", "12.34", "amount to deposit, a decimal string")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline for the whole run, retries included")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client, err := ledger.Connect(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledger-client:", err)
		os.Exit(2)
	}
	defer client.Close()
	report, err := run(ctx, client, *currency, *amount)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(report)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledger-client:", err)
		client.Close()
		os.Exit(1)
	}
}

func run(ctx context.Context, client *ledger.Client, currency, amount string) (*Report, error) {
	report := &Report{AccountID: "go-" + ledger.NewCommandID()[24:], Currency: currency, DepositedAmount: amount}
	session := client.Session("")
	opened, err := session.OpenAccount(ctx, report.AccountID, currency, "Go client")
	if err != nil {
		return nil, err
	}
	report.OpenedVersion = opened.Version
	deposited, err := session.Deposit(ctx, report.AccountID, amount)
	if err != nil {
		return nil, err
	}
	report.DepositVersion = deposited.Version
	report.DepositCommandID = deposited.CommandID
	report.DepositToken = deposited.ConsistencyToken

	// The session passes the deposit's token: the query server waits (within the deadline) until
	// the read model has the deposit, where a bare read could come before the projector applied it.
	read, err := session.GetAccount(ctx, report.AccountID)
	if err != nil {
		return nil, err
	}
	account := read.GetAccount()
	report.ReadBalance = account.GetBalance()
	report.ReadVersion = account.GetVersion()
	report.ReadStatus = account.GetStatus().String()
	report.ReadFreshAsToken = read.GetFreshness().GetConsistencyToken()

	if !sameAmount(report.ReadBalance, amount) || report.ReadVersion != report.DepositVersion {
		return report, fmt.Errorf(
			"read back balance %s at version %d, expected %s at version %d",
			report.ReadBalance, report.ReadVersion, amount, report.DepositVersion,
		)
	}
	return report, batch(ctx, session, report)
}

// batch opens a second account and moves the deposit into it in one atomic call: the transfer
// sees the account the same batch opened. Each command's own status is in its result.
func batch(ctx context.Context, session *ledger.Session, report *Report) error {
	report.BatchAccountID = "go-" + ledger.NewCommandID()[24:]
	sent, err := session.ExecuteBatch(ctx, []*ledgerv1.Command{
		ledger.OpenAccountCommand(report.BatchAccountID, report.Currency, "Go client batch"),
		ledger.TransferCommand(report.AccountID, report.BatchAccountID, report.DepositedAmount),
	}, true)
	if err != nil {
		return err
	}
	report.BatchToken = sent.ConsistencyToken
	for _, result := range sent.Results {
		report.BatchCommandIDs = append(report.BatchCommandIDs, result.CommandID)
		report.BatchCodes = append(report.BatchCodes, result.Code.String())
		if result.Code != codes.OK {
			return fmt.Errorf("batch command %s: %w", result.CommandID, result.Err())
		}
	}
	read, err := session.GetAccounts(ctx, []string{report.AccountID, report.BatchAccountID})
	if err != nil {
		return err
	}
	report.BatchReadBalances = map[string]string{}
	for _, account := range read.GetAccounts() {
		report.BatchReadBalances[account.GetAccountId()] = account.GetBalance()
	}
	if !sameAmount(report.BatchReadBalances[report.AccountID], "0") ||
		!sameAmount(report.BatchReadBalances[report.BatchAccountID], report.DepositedAmount) {
		return fmt.Errorf("read back balances %v after moving %s", report.BatchReadBalances, report.DepositedAmount)
	}
	return nil
}

// sameAmount compares decimal strings exactly ("12.5" and "12.50" are the same money).
func sameAmount(a, b string) bool {
	x, okX := new(big.Rat).SetString(a)
	y, okY := new(big.Rat).SetString(b)
	return okX && okY && x.Cmp(y) == 0
}
