package ledger

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config says where the servers are, how to trust them and who is calling. The servers serve TLS
// and want a bearer token on every call (README, "Security"); Insecure is only for a server
// started with LEDGER_INSECURE=1 on loopback.
type Config struct {
	// CommandAddress and QueryAddress are the servers' host:port.
	CommandAddress string
	QueryAddress   string
	// CACert is the PEM of the CA that signed the servers' certificates, or CACertFile names a
	// file holding it; with neither, the system's roots are trusted.
	CACert     []byte
	CACertFile string
	// Token, or the file TokenFile names (surrounding white space ignored), is sent on every
	// call as `authorization: Bearer <token>`.
	Token     string
	TokenFile string
	// Insecure: plaintext, for a loopback server started with LEDGER_INSECURE=1.
	Insecure bool
	// Timeout is a call's overall deadline, retries included, when its context has none.
	// Zero: DefaultTimeout.
	Timeout time.Duration
	// Retry spaces the retries; a zero field takes DefaultRetryPolicy's value.
	Retry RetryPolicy
	// DialOptions are added to both connections' (interceptors, for instance).
	DialOptions []grpc.DialOption
	// Clock is the retries' time and jitter; nil: the real ones. For tests.
	Clock Clock
}

// DefaultTimeout is a call's overall deadline when neither its context nor Config sets one.
const DefaultTimeout = 30 * time.Second

// bearer sends the token as `authorization: Bearer <token>` on every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity: gRPC refuses to send the token over a plaintext connection, unless
// the configuration asked for plaintext.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

func (config Config) token() (string, error) {
	if config.TokenFile == "" {
		return config.Token, nil
	}
	if config.Token != "" {
		return "", errors.New("ledger: Config has both Token and TokenFile: give one")
	}
	text, err := os.ReadFile(config.TokenFile)
	if err != nil {
		return "", fmt.Errorf("ledger: TokenFile: %w", err)
	}
	return strings.TrimSpace(string(text)), nil
}

func (config Config) tls() (*tls.Config, error) {
	settings := &tls.Config{MinVersion: tls.VersionTLS12}
	pem := config.CACert
	if config.CACertFile != "" {
		if pem != nil {
			return nil, errors.New("ledger: Config has both CACert and CACertFile: give one")
		}
		var err error
		if pem, err = os.ReadFile(config.CACertFile); err != nil {
			return nil, fmt.Errorf("ledger: CACertFile: %w", err)
		}
	}
	if pem != nil {
		settings.RootCAs = x509.NewCertPool()
		if !settings.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("ledger: the CA certificate holds no PEM certificate")
		}
	}
	return settings, nil
}

// dialOptions: TLS (or plaintext if asked), the token, then the caller's own options.
func (config Config) dialOptions() ([]grpc.DialOption, error) {
	token, err := config.token()
	if err != nil {
		return nil, err
	}
	var options []grpc.DialOption
	if config.Insecure {
		options = append(options, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		settings, err := config.tls()
		if err != nil {
			return nil, err
		}
		options = append(options, grpc.WithTransportCredentials(credentials.NewTLS(settings)))
	}
	if token != "" {
		options = append(options, grpc.WithPerRPCCredentials(bearer{token: token, secure: !config.Insecure}))
	}
	return append(options, config.DialOptions...), nil
}
