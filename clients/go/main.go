// Command ledger-client shows the Ledger's read-your-writes from Go: it opens an account,
// deposits into it, and reads the account back from the query server with the deposit's
// consistency token, so the answer is guaranteed to include the deposit.
//
// Generate the stubs first (they are not committed), then run it against `make run`, which
// serves TLS with a local CA and wants a bearer token on every call:
//
//	python clients/go/generate.py
//	cd clients/go && go run . -command 127.0.0.1:50051 -query 127.0.0.1:50052 \
//	    -cacert ../../.data/credentials/ca.pem -token-file ../../.data/credentials/writer.token
//
// It prints one JSON object describing what it did, and exits with status 1 if anything failed
// or the account read back is not what was written.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"ledger/clients/go/internal/ledgerv1"
)

// Report is what the client prints: the account it made and what each step answered.
type Report struct {
	AccountID        string `json:"account_id"`
	Currency         string `json:"currency"`
	OpenedVersion    int64  `json:"opened_version"`
	DepositedAmount  string `json:"deposited_amount"`
	DepositVersion   int64  `json:"deposit_version"`
	DepositToken     string `json:"deposit_token"`
	ReadBalance      string `json:"read_balance"`
	ReadVersion      int64  `json:"read_version"`
	ReadStatus       string `json:"read_status"`
	ReadFreshAsToken string `json:"read_fresh_as_token"`
}

func main() {
	commandAddr := flag.String("command", "127.0.0.1:50051", "command server address (host:port)")
	queryAddr := flag.String("query", "127.0.0.1:50052", "query server address (host:port)")
	currency := flag.String("currency", "EUR", "ISO 4217 currency of the new account")
	amount := flag.String("amount", "12.34", "amount to deposit, a decimal string")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline for the whole run")
	caCert := flag.String("cacert", "", "PEM file of the CA that signed the servers' certificates (default: the system's)")
	tokenFile := flag.String("token-file", "", "file holding the bearer token sent with every call")
	plaintext := flag.Bool("plaintext", false, "no TLS (servers run with LEDGER_INSECURE=1 on loopback)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	options, err := dialOptions(*plaintext, *caCert, *tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledger-client:", err)
		os.Exit(2)
	}
	report, err := run(ctx, *commandAddr, *queryAddr, *currency, *amount, options)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledger-client:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		fmt.Fprintln(os.Stderr, "ledger-client:", err)
		os.Exit(1)
	}
}

// bearer sends the token as `authorization: Bearer <token>` on every call, over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// dialOptions: TLS trusting caCert (or the system's CAs), and the token in tokenFile if given.
func dialOptions(plaintext bool, caCert, tokenFile string) ([]grpc.DialOption, error) {
	if plaintext {
		if tokenFile != "" {
			return nil, fmt.Errorf("-token-file needs TLS: a token is never sent in plaintext")
		}
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caCert != "" {
		pem, err := os.ReadFile(caCert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert: no PEM certificate in %s", caCert)
		}
	}
	options := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(config))}
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		options = append(options, grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(token)))))
	}
	return options, nil
}

func run(ctx context.Context, commandAddr, queryAddr, currency, amount string, options []grpc.DialOption) (*Report, error) {
	commandConn, err := grpc.NewClient(commandAddr, options...)
	if err != nil {
		return nil, fmt.Errorf("command server %s: %w", commandAddr, err)
	}
	defer commandConn.Close()
	queryConn, err := grpc.NewClient(queryAddr, options...)
	if err != nil {
		return nil, fmt.Errorf("query server %s: %w", queryAddr, err)
	}
	defer queryConn.Close()
	commands := ledgerv1.NewCommandServiceClient(commandConn)
	queries := ledgerv1.NewQueryServiceClient(queryConn)

	report := &Report{AccountID: "go-" + randomHex(8), Currency: currency, DepositedAmount: amount}
	// A fresh command_id per intended change: a retry of the same call would reuse it.
	opened, err := commands.OpenAccount(ctx, &ledgerv1.OpenAccountRequest{
		CommandId: newCommandID(),
		AccountId: report.AccountID,
		Currency:  currency,
		Owner:     "Go client",
	})
	if err != nil {
		return nil, fmt.Errorf("OpenAccount: %w", err)
	}
	report.OpenedVersion = opened.GetVersion()

	deposited, err := commands.Deposit(ctx, &ledgerv1.DepositRequest{
		CommandId: newCommandID(),
		AccountId: report.AccountID,
		Amount:    amount,
	})
	if err != nil {
		return nil, fmt.Errorf("Deposit: %w", err)
	}
	report.DepositVersion = deposited.GetVersion()
	report.DepositToken = deposited.GetConsistencyToken()

	// The token makes the query server wait (within our deadline) until the read model has the
	// deposit: without it, this read could come before the projector applied it.
	read, err := queries.GetAccount(ctx, &ledgerv1.GetAccountRequest{
		AccountId:        report.AccountID,
		ConsistencyToken: deposited.GetConsistencyToken(),
	})
	if err != nil {
		return nil, fmt.Errorf("GetAccount: %w", err)
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
	return report, nil
}

// sameAmount compares decimal strings exactly ("12.5" and "12.50" are the same money).
func sameAmount(a, b string) bool {
	x, okX := new(big.Rat).SetString(a)
	y, okY := new(big.Rat).SetString(b)
	return okX && okY && x.Cmp(y) == 0
}

// newCommandID returns a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, with
// the version (7) and variant (10) set. github.com/google/uuid >= 1.6 has it as uuid.NewV7.
func newCommandID() string {
	id := make([]byte, 16)
	if _, err := rand.Read(id[6:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	millis := uint64(time.Now().UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(millis >> (40 - 8*i))
	}
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	text := hex.EncodeToString(id)
	return text[0:8] + "-" + text[8:12] + "-" + text[12:16] + "-" + text[16:20] + "-" + text[20:]
}

func randomHex(bytes int) string {
	buffer := make([]byte, bytes)
	if _, err := rand.Read(buffer); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(buffer)
}
